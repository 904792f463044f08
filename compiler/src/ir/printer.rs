//! The stable text form of the IR (`aiic emit --target ir`); snapshot tests read it.

use super::{BinOp, Dist, InitOp, Kernel, Module, Op, Pattern, Sched, UnOp};
use std::fmt::Write;

fn un(op: UnOp) -> &'static str {
    match op {
        UnOp::Neg => "neg",
        UnOp::Not => "not",
        UnOp::Sqrt => "sqrt",
        UnOp::Rsqrt => "rsqrt",
        UnOp::Abs => "abs",
        UnOp::Exp => "exp",
        UnOp::Log => "log",
        UnOp::Sin => "sin",
        UnOp::Cos => "cos",
        UnOp::Tanh => "tanh",
        UnOp::Floor => "floor",
    }
}

fn bin(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "add",
        BinOp::Sub => "sub",
        BinOp::Mul => "mul",
        BinOp::Div => "div",
        BinOp::Rem => "rem",
        BinOp::Pow => "pow",
        BinOp::Min => "min",
        BinOp::Max => "max",
        BinOp::Eq => "eq",
        BinOp::Ne => "ne",
        BinOp::Lt => "lt",
        BinOp::Le => "le",
        BinOp::Gt => "gt",
        BinOp::Ge => "ge",
        BinOp::And => "and",
        BinOp::Or => "or",
    }
}

fn pattern(m: &Module, p: &Pattern) -> String {
    let a = |i: &usize| m.agents[*i].name.clone();
    match p {
        Pattern::Map { agent } => format!("map({})", a(agent)),
        Pattern::Integrate { agent, integrator, phase } => {
            format!("integrate({}, {integrator}, phase {phase})", a(agent))
        }
        Pattern::AllPairs { a: x, b: y } => format!("all_pairs({}, {})", a(x), a(y)),
        Pattern::Neighbors { a: x, b: y, bound } => format!("neighbors({}, {}, bound {bound:?})", a(x), a(y)),
        Pattern::Spawn { agent } => format!("spawn({})", a(agent)),
        Pattern::Uniform => "uniform".to_string(),
    }
}

fn column(m: &Module, k: &Kernel, slot: u8, col: u32) -> String {
    let slots = k.pattern.slots();
    let Some(&agent) = slots.get(slot as usize) else { return format!("?{slot}.{col}") };
    let schema = &m.agents[agent];
    let mut at = 0;
    for f in &schema.fields {
        for lane in &f.lanes {
            if at == col {
                return format!("{}.{lane}", ["a", "b"][slot as usize]);
            }
            at += 1;
        }
    }
    format!("{}.#{col}", ["a", "b"][slot as usize])
}

pub fn print_kernel(m: &Module, k: &Kernel) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "kernel {} : {} {{", k.name, pattern(m, &k.pattern));
    for (i, inst) in k.insts.iter().enumerate() {
        let ty = inst.ty.name();
        let line = match &inst.op {
            Op::Const(x) if inst.ty.is_int() || inst.ty == super::Scalar::Bool => {
                format!("%{i}: {ty} = const {}", *x as i64)
            }
            Op::Const(x) => format!("%{i}: {ty} = const {x:?}"),
            Op::Param(p) => format!("%{i}: {ty} = param {}", m.lane_name(*p)),
            Op::Tensor(j) => format!("%{i}: {ty} = tensor lane {j}"),
            Op::Load { slot, col } => format!("%{i}: {ty} = load {}", column(m, k, *slot, *col)),
            Op::Index => format!("%{i}: {ty} = index"),
            Op::Count => format!("%{i}: {ty} = count"),
            Op::Rand { dist, stream } => {
                format!("%{i}: {ty} = rand {} #{stream}", if *dist == Dist::Uniform { "uniform" } else { "normal" })
            }
            Op::Input(n) => format!("%{i}: {ty} = input {n}"),
            Op::Un(op, a) => format!("%{i}: {ty} = {} %{a}", un(*op)),
            Op::Bin(op, a, b) => format!("%{i}: {ty} = {} %{a}, %{b}", bin(*op)),
            Op::Select(c, a, b) => format!("%{i}: {ty} = select %{c}, %{a}, %{b}"),
            Op::Cast(a) => format!("%{i}: {ty} = cast %{a}"),
            Op::Store { slot, col, value } => format!("store {} = %{value}", column(m, k, *slot, *col)),
            Op::Accum { slot, col, value } => format!("accum {} += %{value}", column(m, k, *slot, *col)),
            Op::Reduce { out, value } => format!("reduce out{out} += %{value}"),
            Op::Check { cond, msg } => format!("check %{cond} \"{}\"", k.messages[*msg as usize]),
        };
        let _ = writeln!(s, "  {line}");
    }
    if let Some(g) = k.guard {
        let _ = writeln!(s, "  guard %{g}");
    }
    if let Some(t) = &k.tensor {
        let cols = |cs: &[u32]| cs.iter().map(|&c| column(m, k, 0, c)).collect::<Vec<_>>().join(", ");
        let layers: Vec<String> = t
            .layers
            .iter()
            .map(|l| format!("[{}x{}]{}", l.rows, l.cols, if l.bias.is_some() { "+b" } else { "" }))
            .collect();
        let _ = writeln!(
            s,
            "  tensor ({}) -> {} act {:?} -> {} ({}) precision {} tolerance {:e}",
            cols(&t.inputs),
            layers.join(" -> "),
            t.act,
            if t.accumulate { "+=" } else { "=" },
            cols(&t.outputs),
            t.precision.name(),
            t.tolerance
        );
    }
    s.push_str("}\n");
    s
}

pub fn print_module(m: &Module) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "module {}", m.name);
    for (a, types) in m.agents.iter().zip(&m.column_types) {
        let mut cols = Vec::new();
        let mut at = 0;
        for f in &a.fields {
            for lane in &f.lanes {
                cols.push(format!("{lane}: {} {:?}", types[at].name(), f.kind).to_lowercase());
                at += 1;
            }
        }
        let _ = writeln!(s, "agent {} [{}]", a.name, cols.join(", "));
    }
    for u in &m.uniforms {
        let _ = writeln!(s, "uniform {}: {} = {:?}", u.name, u.ty.name(), u.value);
    }
    for t in &m.tensors {
        let dims: Vec<String> = t.shape.iter().map(u32::to_string).collect();
        let _ = writeln!(s, "tensor {}: {}[{}] at lane {}", t.param, t.ty.name(), dims.join(", "), t.lane);
    }
    s.push('\n');
    for k in &m.kernels {
        s.push_str(&print_kernel(m, k));
        s.push('\n');
    }
    let sched = |list: &[Sched]| -> Vec<String> {
        list.iter()
            .map(|x| match x {
                Sched::Zero { agent, cols } => {
                    let names: Vec<String> = cols.iter().map(|c| column_name(m, *agent, *c)).collect();
                    format!("zero {} [{}]", m.agents[*agent].name, names.join(", "))
                }
                Sched::Run(k) => format!("run {}", m.kernels[*k].name),
                Sched::Exact { agent, cols } => {
                    let names: Vec<String> = cols
                        .iter()
                        .map(|(f, t)| format!("{} -> {}", column_name(m, *agent, *f), column_name(m, *agent, *t)))
                        .collect();
                    format!("exact {} [{}]", m.agents[*agent].name, names.join(", "))
                }
                Sched::Model { agent, model, inputs, outputs } => {
                    let names =
                        |cols: &[u32]| cols.iter().map(|c| column_name(m, *agent, *c)).collect::<Vec<_>>().join(", ");
                    let h = &m.hosted[*model];
                    format!(
                        "model {} ({}, on the host) {} [{}] -> [{}]",
                        h.name,
                        h.file,
                        m.agents[*agent].name,
                        names(inputs),
                        names(outputs)
                    )
                }
            })
            .collect()
    };
    let _ = writeln!(s, "init:");
    for op in &m.init {
        let line = match op {
            InitOp::Spawn { agent, kernel, count } => {
                format!("spawn {} x {count} with {}", m.agents[*agent].name, m.kernels[*kernel].name)
            }
            InitOp::File { agent, path, kernel } => {
                let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                format!("spawn {} from \"{name}\" then {}", m.agents[*agent].name, m.kernels[*kernel].name)
            }
        };
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(s, "prime:");
    for l in sched(&m.prime) {
        let _ = writeln!(s, "  {l}");
    }
    let _ = writeln!(s, "step:");
    for l in sched(&m.step) {
        let _ = writeln!(s, "  {l}");
    }
    for law in &m.laws {
        let terms: Vec<&str> = law.terms.iter().map(|t| m.kernels[*t].name.as_str()).collect();
        let tol = law.tolerance.map_or(String::new(), |t| format!(" tolerance {t:?}"));
        let assume = if law.assume { " assume" } else { "" };
        let _ = writeln!(
            s,
            "law {} ({} lanes) = {}({}){tol}{assume}",
            law.name,
            law.lanes,
            m.kernels[law.combine].name,
            terms.join(", ")
        );
        for (t, plan) in law.measure.iter().enumerate() {
            let _ = writeln!(s, "  measure term {t} ({:?}) into {}:", plan.visits, m.agents[plan.agent].name);
            for l in sched(&plan.fill) {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
    s
}

fn column_name(m: &Module, agent: usize, col: u32) -> String {
    m.agents[agent]
        .fields
        .iter()
        .flat_map(|f| f.lanes.iter())
        .nth(col as usize)
        .cloned()
        .unwrap_or_else(|| format!("#{col}"))
}
