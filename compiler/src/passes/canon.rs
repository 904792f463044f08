//! A canonical form for the algebra kernels compute, used to decide whether two expressions are
//! equal (or one is zero) symbolically.
//!
//! An expression becomes a sum of terms `coefficient × Π atomᵉ`. Atoms are leaves (agent
//! columns, parameters), roots `√P` of canonical polynomials `P` (the exponent counts halves, so
//! `1/P` is `√P⁻²` and `rsqrt(P)` is `√P⁻¹`), and opaque functions of canonical arguments (`exp`,
//! comparisons, …). Products of sums are expanded; `√P²` becomes `P`; a sum that equals the base
//! `P` of a root in every term of the other factor merges into it (`P · √P⁻³ = √P⁻¹`), which is
//! what makes hand-written forces (`d / (r2 * sqrt(r2))`) and derived ones (`d * rsqrt(r2)³`)
//! meet. The form is sound (equal forms mean equal values wherever both are defined) but not
//! complete: a difference it cannot cancel is reported as undecided, never as proved.

use crate::ir::{BinOp, Kernel, Op, UnOp, V};
use std::collections::{BTreeMap, HashMap};

/// Past this many terms a form is abandoned as undecided rather than expanded further.
const MAX_TERMS: usize = 4000;

pub type AtomId = u32;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leaf {
    Load { slot: u8, col: u32 },
    Param(u32),
    Input(u32),
    Index,
    Count,
    Rand(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AtomKey {
    Leaf(Leaf),
    /// √ of the polynomial with this key.
    Root(String),
    /// An opaque function of canonical arguments.
    Func(String, Vec<String>),
}

/// A monomial: atom → exponent (halves for roots, integers otherwise).
pub type Mono = BTreeMap<AtomId, i32>;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Poly {
    pub terms: BTreeMap<Mono, f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecided {
    TooLarge,
}

pub type CResult<T> = Result<T, Undecided>;

impl Poly {
    pub fn constant(c: f64) -> Poly {
        let mut terms = BTreeMap::new();
        if c != 0.0 {
            terms.insert(Mono::new(), c);
        }
        Poly { terms }
    }

    pub fn atom(a: AtomId, e: i32) -> Poly {
        let mut m = Mono::new();
        m.insert(a, e);
        let mut terms = BTreeMap::new();
        terms.insert(m, 1.0);
        Poly { terms }
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn max_coeff(&self) -> f64 {
        self.terms.values().fold(0.0, |m, c| m.max(c.abs()))
    }

    /// Adds a term; a sum that cancels to within rounding of its parts is removed, so that
    /// coefficients computed along different paths (0.1·3 and 0.3) still cancel.
    fn add_term(&mut self, m: Mono, c: f64) {
        use std::collections::btree_map::Entry;
        match self.terms.entry(m) {
            Entry::Vacant(v) => {
                if c != 0.0 {
                    v.insert(c);
                }
            }
            Entry::Occupied(mut o) => {
                let old = *o.get();
                let new = old + c;
                if new.abs() <= 1e-12 * old.abs().max(c.abs()) {
                    o.remove();
                } else {
                    *o.get_mut() = new;
                }
            }
        }
    }

    pub fn scale(&self, k: f64) -> Poly {
        if k == 0.0 {
            return Poly::default();
        }
        Poly { terms: self.terms.iter().map(|(m, c)| (m.clone(), c * k)).collect() }
    }

    pub fn add(&self, o: &Poly) -> CResult<Poly> {
        let mut r = self.clone();
        for (m, c) in &o.terms {
            r.add_term(m.clone(), *c);
        }
        if r.terms.len() > MAX_TERMS {
            return Err(Undecided::TooLarge);
        }
        Ok(r)
    }

    pub fn sub(&self, o: &Poly) -> CResult<Poly> {
        self.add(&o.scale(-1.0))
    }

    /// The single term, if there is exactly one.
    fn monomial(&self) -> Option<(&Mono, f64)> {
        if self.terms.len() == 1 {
            self.terms.iter().next().map(|(m, c)| (m, *c))
        } else {
            None
        }
    }
}

/// Interns atoms and turns kernel values into canonical polynomials.
#[derive(Default)]
pub struct Canon {
    atoms: Vec<AtomKey>,
    ids: HashMap<AtomKey, AtomId>,
    /// For root atoms: the polynomial under the root.
    bases: HashMap<AtomId, Poly>,
    /// For function atoms: the function and its arguments, to evaluate them numerically.
    calls: HashMap<AtomId, (String, Vec<Poly>)>,
}

/// Rounds coefficients so that keys of equal polynomials agree despite rounding.
fn key_of(p: &Poly) -> String {
    let mut s = String::new();
    for (m, c) in &p.terms {
        let exps: Vec<String> = m.iter().map(|(a, e)| format!("{a}^{e}")).collect();
        s.push_str(&format!("{:.10e}*{};", c, exps.join(".")));
    }
    s
}

impl Canon {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, k: AtomKey) -> AtomId {
        if let Some(&id) = self.ids.get(&k) {
            return id;
        }
        let id = self.atoms.len() as AtomId;
        self.atoms.push(k.clone());
        self.ids.insert(k, id);
        id
    }

    pub fn leaf(&mut self, l: Leaf) -> Poly {
        let a = self.intern(AtomKey::Leaf(l));
        Poly::atom(a, 1)
    }

    fn func(&mut self, name: &str, args: &[&Poly]) -> Poly {
        let a = self.intern(AtomKey::Func(name.to_string(), args.iter().map(|p| key_of(p)).collect()));
        self.calls.entry(a).or_insert_with(|| (name.to_string(), args.iter().map(|p| (*p).clone()).collect()));
        Poly::atom(a, 1)
    }

    /// The value of `p` with every leaf set by `leaf`; None where it is not a finite real.
    fn eval(&self, p: &Poly, leaf: &dyn Fn(AtomId) -> f64, memo: &mut HashMap<AtomId, f64>) -> Option<f64> {
        self.eval_with_size(p, leaf, memo).map(|(v, _)| v)
    }

    /// The value, and the sum of the magnitudes of its terms (the scale rounding is relative to).
    fn eval_with_size(
        &self,
        p: &Poly,
        leaf: &dyn Fn(AtomId) -> f64,
        memo: &mut HashMap<AtomId, f64>,
    ) -> Option<(f64, f64)> {
        let (mut total, mut size) = (0.0, 0.0);
        for (m, c) in &p.terms {
            let mut t = *c;
            for (a, e) in m {
                let x = self.eval_atom(*a, leaf, memo)?;
                // A root's value is √P and its exponent counts halves of P: (√P)^e.
                t *= x.powi(*e);
            }
            total += t;
            size += t.abs();
        }
        (total.is_finite() && size.is_finite()).then_some((total, size))
    }

    fn eval_atom(&self, a: AtomId, leaf: &dyn Fn(AtomId) -> f64, memo: &mut HashMap<AtomId, f64>) -> Option<f64> {
        if let Some(&x) = memo.get(&a) {
            return Some(x);
        }
        let x = match &self.atoms[a as usize] {
            AtomKey::Leaf(_) => leaf(a),
            AtomKey::Root(_) => {
                let b = self.eval(self.bases.get(&a)?, leaf, memo)?;
                if b < 0.0 {
                    return None;
                }
                b.sqrt()
            }
            AtomKey::Func(..) => {
                let (name, args) = self.calls.get(&a)?;
                let v: Option<Vec<f64>> = args.iter().map(|p| self.eval(p, leaf, memo)).collect();
                let v = v?;
                let b = |x: bool| if x { 1.0 } else { 0.0 };
                match (name.as_str(), v.as_slice()) {
                    ("not", [x]) => b(*x == 0.0),
                    ("abs", [x]) => x.abs(),
                    ("exp", [x]) => x.exp(),
                    ("log", [x]) => x.ln(),
                    ("sin", [x]) => x.sin(),
                    ("cos", [x]) => x.cos(),
                    ("tanh", [x]) => x.tanh(),
                    ("floor", [x]) => x.floor(),
                    ("select", [c, x, y]) => {
                        if *c != 0.0 {
                            *x
                        } else {
                            *y
                        }
                    }
                    ("pow", [x, y]) => x.powf(*y),
                    ("Lt", [x, y]) => b(x < y),
                    ("Le", [x, y]) => b(x <= y),
                    ("Gt", [x, y]) => b(x > y),
                    ("Ge", [x, y]) => b(x >= y),
                    ("Eq", [x, y]) => b(x == y),
                    ("Ne", [x, y]) => b(x != y),
                    ("And", [x, y]) => b(*x != 0.0 && *y != 0.0),
                    ("Or", [x, y]) => b(*x != 0.0 || *y != 0.0),
                    ("Min", [x, y]) => x.min(*y),
                    ("Max", [x, y]) => x.max(*y),
                    ("Rem", [x, y]) => x % y,
                    _ => return None,
                }
            }
        };
        if !x.is_finite() {
            return None;
        }
        memo.insert(a, x);
        Some(x)
    }

    /// Whether `a` and `b` visibly differ at a few pseudo-random points: a cheap, sound way to
    /// refuse an equality before the exact test expands anything.
    fn differ_numerically(&self, a: &Poly, b: &Poly) -> bool {
        for seed in [0x9E37_79B9_u64, 0x85EB_CA6B] {
            let leaf = |id: AtomId| {
                let mut z = (id as u64 + 1).wrapping_mul(seed).wrapping_add(0x2545_F491_4F6C_DD1D);
                z ^= z >> 29;
                z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z ^= z >> 32;
                0.5 + (z % 10_000) as f64 / 10_000.0
            };
            let mut memo = HashMap::new();
            let (Some((x, sx)), Some((y, sy))) =
                (self.eval_with_size(a, &leaf, &mut memo), self.eval_with_size(b, &leaf, &mut memo))
            else {
                continue;
            };
            if (x - y).abs() > 1e-7 * (sx + sy) {
                return true;
            }
        }
        false
    }

    /// Splits `p` into `scale × base` with the base's first coefficient ±1.
    fn normalize(p: &Poly) -> (f64, Poly) {
        let lead = p.terms.values().next().copied().unwrap_or(1.0).abs();
        (lead, p.scale(1.0 / lead))
    }

    fn root_atom(&mut self, base: &Poly) -> AtomId {
        let id = self.intern(AtomKey::Root(key_of(base)));
        self.bases.entry(id).or_insert_with(|| base.clone());
        id
    }

    fn mono_mul(&mut self, a: &Mono, b: &Mono) -> Mono {
        let mut m = a.clone();
        for (k, e) in b {
            let v = m.entry(*k).or_insert(0);
            *v += e;
            if *v == 0 {
                m.remove(k);
            }
        }
        m
    }

    /// Rewrites `√P^e` with `e ≥ 2` as `P × √P^(e−2)`, expanding until every root exponent is below 2.
    fn reduce_roots(&mut self, p: Poly) -> CResult<Poly> {
        let mut out = Poly::default();
        let mut work: Vec<(Mono, f64)> = p.terms.into_iter().collect();
        while let Some((m, c)) = work.pop() {
            let high = m.iter().find(|(a, e)| **e >= 2 && self.bases.contains_key(a)).map(|(a, e)| (*a, *e));
            match high {
                Some((a, e)) => {
                    let mut rest = m.clone();
                    if e == 2 {
                        rest.remove(&a);
                    } else {
                        rest.insert(a, e - 2);
                    }
                    let base = self.bases[&a].clone();
                    for (bm, bc) in &base.terms {
                        let nm = self.mono_mul(&rest, bm);
                        work.push((nm, c * bc));
                    }
                    if work.len() > MAX_TERMS {
                        return Err(Undecided::TooLarge);
                    }
                }
                None => out.add_term(m, c),
            }
        }
        if out.terms.len() > MAX_TERMS {
            return Err(Undecided::TooLarge);
        }
        Ok(out)
    }

    /// Writes `p` as `k × g × B`: `g` the monomial common to every term, `B` the rest with its
    /// first coefficient ±1, and the root atom whose base is `±B`, if there is one.
    fn factor(&mut self, p: &Poly) -> (f64, Mono, Poly, Option<(AtomId, f64)>) {
        let mut g: Mono = p.terms.keys().next().cloned().unwrap_or_default();
        for m in p.terms.keys().skip(1) {
            g = g.into_iter().filter_map(|(a, e)| m.get(&a).map(|f| (a, e.min(*f)))).collect();
        }
        g.retain(|_, e| *e != 0);
        let inv: Mono = g.iter().map(|(a, e)| (*a, -e)).collect();
        let rest = Poly { terms: p.terms.iter().map(|(m, c)| (self.mono_mul(m, &inv), *c)).collect() };
        let (k, base) = Self::normalize(&rest);
        let mut root = None;
        for sign in [1.0, -1.0] {
            if let Some(&id) = self.ids.get(&AtomKey::Root(key_of(&base.scale(sign)))) {
                root = Some((id, sign));
                break;
            }
        }
        (k, g, base, root)
    }

    /// Folds a sum back into a root it is the base of: `(x² + y²) · √(x² + y²)⁻² = 1`.
    pub fn tidy(&mut self, p: Poly) -> Poly {
        if p.terms.len() < 2 {
            return p;
        }
        let (k, g, _, root) = self.factor(&p);
        match root {
            Some((id, sign)) if g.get(&id).is_some_and(|e| *e < 0) => {
                let mut m = g;
                let e = m[&id] + 2;
                if e == 0 {
                    m.remove(&id);
                } else {
                    m.insert(id, e);
                }
                let mut terms = BTreeMap::new();
                terms.insert(m, k * sign);
                Poly { terms }
            }
            _ => p,
        }
    }

    pub fn mul(&mut self, a: &Poly, b: &Poly) -> CResult<Poly> {
        if a.terms.len().saturating_mul(b.terms.len()) > MAX_TERMS * 4 {
            return Err(Undecided::TooLarge);
        }
        let mut r = Poly::default();
        for (ma, ca) in &a.terms {
            for (mb, cb) in &b.terms {
                let m = self.mono_mul(ma, mb);
                r.add_term(m, ca * cb);
            }
        }
        let r = self.reduce_roots(r)?;
        Ok(self.tidy(r))
    }

    pub fn add(&mut self, a: &Poly, b: &Poly) -> CResult<Poly> {
        let r = a.add(b)?;
        Ok(self.tidy(r))
    }

    /// `√p`, as a root atom of `p`'s normalized base.
    pub fn sqrt(&mut self, p: &Poly) -> Poly {
        if p.is_zero() {
            return Poly::default();
        }
        let (k, base) = Self::normalize(p);
        let id = self.root_atom(&base);
        Poly::atom(id, 1).scale(k.sqrt())
    }

    /// `1/p`: a monomial is inverted term-wise; otherwise `p = k g B` becomes `g⁻¹ √B⁻² / k`.
    pub fn recip(&mut self, p: &Poly) -> Option<Poly> {
        if let Some((m, c)) = p.monomial() {
            if c == 0.0 {
                return None;
            }
            let inv: Mono = m.iter().map(|(a, e)| (*a, -e)).collect();
            let mut terms = BTreeMap::new();
            terms.insert(inv, 1.0 / c);
            return Some(Poly { terms });
        }
        if p.is_zero() {
            return None;
        }
        let (k, g, base, root) = self.factor(p);
        let (id, sign) = match root {
            Some(r) => r,
            None => (self.root_atom(&base), 1.0),
        };
        let mut m: Mono = g.iter().map(|(a, e)| (*a, -e)).collect();
        let e = m.get(&id).copied().unwrap_or(0) - 2;
        if e == 0 {
            m.remove(&id);
        } else {
            m.insert(id, e);
        }
        let mut terms = BTreeMap::new();
        terms.insert(m, 1.0 / (k * sign));
        Some(Poly { terms })
    }

    pub fn rsqrt(&mut self, p: &Poly) -> Option<Poly> {
        if p.is_zero() {
            return None;
        }
        let (k, base) = Self::normalize(p);
        let id = self.root_atom(&base);
        Some(Poly::atom(id, -1).scale(1.0 / k.sqrt()))
    }

    pub fn opaque(&mut self, name: &str, args: &[&Poly]) -> Poly {
        self.func(name, args)
    }

    /// Multiplies every form by the same monomial so that no leaf or root has a negative
    /// exponent, then rewrites `√P²` as `P`. An expression is zero exactly when it is zero after
    /// multiplying by something that is nonzero wherever it is defined, and this form is
    /// canonical for polynomials in the leaves and in roots with exponents 0 and 1.
    fn clear_denominators(&mut self, polys: &[Poly]) -> CResult<Vec<Poly>> {
        let mut out = polys.to_vec();
        for _ in 0..6 {
            let mut lift = Mono::new();
            for p in &out {
                for m in p.terms.keys() {
                    for (a, e) in m {
                        let is_func = matches!(self.atoms[*a as usize], AtomKey::Func(..));
                        if *e < 0 && !is_func {
                            let v = lift.entry(*a).or_insert(0);
                            *v = (*v).max(-e);
                        }
                    }
                }
            }
            if lift.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for p in &out {
                let mut q = Poly::default();
                for (m, c) in &p.terms {
                    let nm = self.mono_mul(m, &lift);
                    q.add_term(nm, *c);
                }
                next.push(self.reduce_roots(q)?);
            }
            out = next;
        }
        Ok(out)
    }

    /// Whether `a − b` cancels, with a tolerance for rounding in the coefficients.
    pub fn equal(&mut self, a: &Poly, b: &Poly) -> CResult<bool> {
        let d = a.sub(b)?;
        if d.is_zero() {
            return Ok(true);
        }
        if self.differ_numerically(a, b) {
            return Ok(false);
        }
        let cleared = self.clear_denominators(&[a.clone(), b.clone()])?;
        let d = cleared[0].sub(&cleared[1])?;
        let scale = cleared[0].max_coeff().max(cleared[1].max_coeff()).max(f64::MIN_POSITIVE);
        Ok(d.terms.values().all(|c| c.abs() <= 1e-9 * scale))
    }
}

/// How a kernel's leaves are seen by a canonicalisation: loads may stand for other forms (the
/// values of an agent after an interaction), and `select`s may be fixed to one branch.
pub struct View<'k> {
    pub kernel: &'k Kernel,
    pub loads: HashMap<(u8, u32), Poly>,
    /// Branch chosen for each select (by value id); unlisted selects stay opaque.
    pub branches: HashMap<V, bool>,
    memo: HashMap<V, Poly>,
}

impl<'k> View<'k> {
    pub fn new(kernel: &'k Kernel) -> Self {
        View { kernel, loads: HashMap::new(), branches: HashMap::new(), memo: HashMap::new() }
    }

    fn load(&self, c: &mut Canon, slot: u8, col: u32) -> Poly {
        match self.loads.get(&(slot, col)) {
            Some(p) => p.clone(),
            None => c.leaf(Leaf::Load { slot, col }),
        }
    }

    /// The canonical form of value `v`.
    pub fn value(&mut self, c: &mut Canon, v: V) -> CResult<Poly> {
        if let Some(p) = self.memo.get(&v) {
            return Ok(p.clone());
        }
        let inst = &self.kernel.insts[v as usize];
        let p = match inst.op {
            Op::Const(x) => Poly::constant(x),
            Op::Param(i) => c.leaf(Leaf::Param(i)),
            Op::Input(i) => c.leaf(Leaf::Input(i)),
            Op::Index => c.leaf(Leaf::Index),
            Op::Count => c.leaf(Leaf::Count),
            Op::Rand { stream, .. } => c.leaf(Leaf::Rand(stream)),
            Op::Load { slot, col } => self.load(c, slot, col),
            // An opaque function of the plan's inputs, so that it changes when they do.
            Op::Tensor(j) => {
                let cols = self.kernel.tensor.as_ref().map_or(&[][..], |t| t.inputs.as_slice());
                let args: Vec<Poly> = cols.iter().map(|&col| self.load(c, 0, col)).collect();
                c.opaque(&format!("tensor.{j}"), &args.iter().collect::<Vec<_>>())
            }
            Op::Un(op, a) => {
                let x = self.value(c, a)?;
                match op {
                    UnOp::Neg => x.scale(-1.0),
                    UnOp::Sqrt => c.sqrt(&x),
                    UnOp::Rsqrt => c.rsqrt(&x).unwrap_or_else(|| c.opaque("rsqrt0", &[])),
                    UnOp::Not => c.opaque("not", &[&x]),
                    UnOp::Abs => c.opaque("abs", &[&x]),
                    UnOp::Exp => c.opaque("exp", &[&x]),
                    UnOp::Log => c.opaque("log", &[&x]),
                    UnOp::Sin => c.opaque("sin", &[&x]),
                    UnOp::Cos => c.opaque("cos", &[&x]),
                    UnOp::Tanh => c.opaque("tanh", &[&x]),
                    UnOp::Floor => c.opaque("floor", &[&x]),
                }
            }
            Op::Bin(op, a, b) => {
                let x = self.value(c, a)?;
                let y = self.value(c, b)?;
                match op {
                    BinOp::Add => c.add(&x, &y)?,
                    BinOp::Sub => c.add(&x, &y.scale(-1.0))?,
                    BinOp::Mul => c.mul(&x, &y)?,
                    BinOp::Div => match c.recip(&y) {
                        Some(r) => c.mul(&x, &r)?,
                        None => c.opaque("div0", &[&x]),
                    },
                    BinOp::Pow => self.pow(c, &x, b, &y)?,
                    _ => {
                        // Comparisons and the rest are opaque; order-free ones get sorted arguments.
                        let name = format!("{op:?}");
                        let (mut p, mut q) = (key_of(&x), key_of(&y));
                        if op.is_commutative() && p > q {
                            std::mem::swap(&mut p, &mut q);
                            return Ok(self.memoize(v, c.opaque(&name, &[&y, &x])));
                        }
                        c.opaque(&name, &[&x, &y])
                    }
                }
            }
            Op::Select(cond, a, b) => match self.branches.get(&v) {
                Some(true) => self.value(c, a)?,
                Some(false) => self.value(c, b)?,
                None => {
                    let (k, x, y) = (self.value(c, cond)?, self.value(c, a)?, self.value(c, b)?);
                    c.opaque("select", &[&k, &x, &y])
                }
            },
            Op::Cast(a) => {
                let x = self.value(c, a)?;
                if inst.ty.is_float() {
                    x
                } else {
                    c.opaque(&format!("cast_{}", inst.ty.name()), &[&x])
                }
            }
            Op::Store { .. } | Op::Accum { .. } | Op::Reduce { .. } | Op::Check { .. } => Poly::default(),
        };
        Ok(self.memoize(v, p))
    }

    fn memoize(&mut self, v: V, p: Poly) -> Poly {
        self.memo.insert(v, p.clone());
        p
    }

    fn pow(&mut self, c: &mut Canon, x: &Poly, b: V, y: &Poly) -> CResult<Poly> {
        let exp = match self.kernel.insts[b as usize].op {
            Op::Const(e) => Some(e),
            _ => None,
        };
        match exp {
            Some(e) if e.fract() == 0.0 && e.abs() <= 16.0 => {
                let base = if e < 0.0 { c.recip(x) } else { Some(x.clone()) };
                let Some(base) = base else { return Ok(c.opaque("pow", &[x, y])) };
                let mut r = Poly::constant(1.0);
                for _ in 0..e.abs() as i32 {
                    r = c.mul(&r, &base)?;
                }
                Ok(r)
            }
            Some(e) if (e * 2.0).fract() == 0.0 && e.abs() <= 16.0 => {
                let s = c.sqrt(x);
                let halves = (e * 2.0) as i32;
                let base = if halves < 0 { c.recip(&s) } else { Some(s) };
                let Some(base) = base else { return Ok(c.opaque("pow", &[x, y])) };
                let mut r = Poly::constant(1.0);
                for _ in 0..halves.abs() {
                    r = c.mul(&r, &base)?;
                }
                Ok(r)
            }
            _ => Ok(c.opaque("pow", &[x, y])),
        }
    }

    /// Every `select` that `v` depends on, in order of definition.
    pub fn selects(&self, roots: &[V]) -> Vec<V> {
        let mut seen = vec![false; self.kernel.insts.len()];
        let mut stack: Vec<V> = roots.to_vec();
        let mut out = Vec::new();
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v as usize], true) {
                continue;
            }
            let op = &self.kernel.insts[v as usize].op;
            if matches!(op, Op::Select(..)) {
                out.push(v);
            }
            stack.extend(op.args());
        }
        out.sort_unstable();
        out
    }

    /// Forgets memoized forms (after changing `loads` or `branches`).
    pub fn reset(&mut self) {
        self.memo.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(c: &mut Canon, col: u32) -> Poly {
        c.leaf(Leaf::Load { slot: 0, col })
    }

    #[test]
    fn antisymmetric_differences_cancel() {
        let mut c = Canon::new();
        let (x, y) = (var(&mut c, 0), var(&mut c, 1));
        let d1 = x.sub(&y).unwrap();
        let d2 = y.sub(&x).unwrap();
        assert!(d1.add(&d2).unwrap().is_zero());
        let sq1 = c.mul(&d1, &d1).unwrap();
        let sq2 = c.mul(&d2, &d2).unwrap();
        assert!(c.equal(&sq1, &sq2).unwrap());
    }

    #[test]
    fn a_sum_meets_its_own_root() {
        // d / (r2 * sqrt(r2)) == d * rsqrt(r2)^3
        let mut c = Canon::new();
        let (x, y) = (var(&mut c, 0), var(&mut c, 1));
        let (xx, yy) = (c.mul(&x, &x).unwrap(), c.mul(&y, &y).unwrap());
        let r2 = xx.add(&yy).unwrap().add(&Poly::constant(0.01)).unwrap();
        let r2 = c.tidy(r2);
        let s = c.sqrt(&r2);
        let den = c.mul(&r2, &s).unwrap();
        let inv = c.recip(&den).unwrap();
        let hand = c.mul(&x, &inv).unwrap();
        let r = c.rsqrt(&r2).unwrap();
        let r2b = c.mul(&r, &r).unwrap();
        let r3 = c.mul(&r2b, &r).unwrap();
        let derived = c.mul(&x, &r3).unwrap();
        assert!(c.equal(&hand, &derived).unwrap(), "{hand:?} vs {derived:?}");
    }

    #[test]
    fn a_normalized_vector_has_unit_length() {
        let mut c = Canon::new();
        let (x, y) = (var(&mut c, 0), var(&mut c, 1));
        let (xx, yy) = (c.mul(&x, &x).unwrap(), c.mul(&y, &y).unwrap());
        let n2 = xx.add(&yy).unwrap();
        let r = c.rsqrt(&n2).unwrap();
        let (nx, ny) = (c.mul(&x, &r).unwrap(), c.mul(&y, &r).unwrap());
        let (a, b) = (c.mul(&nx, &nx).unwrap(), c.mul(&ny, &ny).unwrap());
        let len2 = c.add(&a, &b).unwrap();
        assert!(c.equal(&len2, &Poly::constant(1.0)).unwrap(), "{len2:?}");
    }

    #[test]
    fn a_sign_error_does_not_cancel() {
        let mut c = Canon::new();
        let (x, y) = (var(&mut c, 0), var(&mut c, 1));
        let f = c.mul(&x, &y).unwrap();
        assert!(!f.add(&f).unwrap().is_zero());
    }
}
