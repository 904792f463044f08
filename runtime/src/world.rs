//! Agent state as structure-of-arrays columns of f64.
//!
//! Every backend stores fields in its own precision; this f64 form is the common currency for
//! initial conditions, the conservation monitor and the output writers.

/// What a field is for; decides whether it is written to outputs and whether it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FieldKind {
    /// Set at spawn, never written.
    Property,
    /// Persistent and mutable.
    State,
    /// Zeroed before each force pass that writes it.
    Accum,
    /// Per-agent temporaries an integrator keeps across force passes; never output.
    Scratch,
}

impl FieldKind {
    /// Properties and states are what a user sees in outputs and may give in spawn files.
    pub fn is_output(self) -> bool {
        matches!(self, FieldKind::Property | FieldKind::State)
    }
}

/// One declared field; it occupies `lanes.len()` consecutive columns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldSchema {
    pub name: String,
    pub kind: FieldKind,
    /// Column names, e.g. `["position.x", "position.y", "position.z"]` or `["mass"]`.
    pub lanes: Vec<String>,
    /// True for integer and boolean fields (written without a fraction).
    pub integral: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentSchema {
    pub name: String,
    pub fields: Vec<FieldSchema>,
}

impl AgentSchema {
    /// Index of the first column of each field, in field order.
    pub fn column_offsets(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.fields.len());
        let mut at = 0;
        for f in &self.fields {
            out.push(at);
            at += f.lanes.len();
        }
        out
    }

    pub fn column_count(&self) -> usize {
        self.fields.iter().map(|f| f.lanes.len()).sum()
    }

    /// The kind of each column, in column order.
    pub fn column_kinds(&self) -> Vec<FieldKind> {
        self.fields.iter().flat_map(|f| f.lanes.iter().map(|_| f.kind)).collect()
    }

    pub fn field(&self, name: &str) -> Option<(usize, &FieldSchema)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// `(column index, column name)` of every property and state lane, in declaration order:
    /// the columns outputs carry and spawn files may give.
    pub fn output_columns(&self) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        let mut at = 0;
        for f in &self.fields {
            for lane in &f.lanes {
                if f.kind.is_output() {
                    out.push((at, lane.as_str()));
                }
                at += 1;
            }
        }
        out
    }
}

/// The agents of one type: `columns[c][i]` is column `c` of agent `i`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AgentData {
    pub count: usize,
    pub columns: Vec<Vec<f64>>,
}

impl AgentData {
    pub fn zeroed(schema: &AgentSchema, count: usize) -> Self {
        AgentData { count, columns: vec![vec![0.0; count]; schema.column_count()] }
    }
}

/// The whole simulation state at one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub schemas: Vec<AgentSchema>,
    pub agents: Vec<AgentData>,
    /// Steps completed since `init`.
    pub step: u64,
}

impl World {
    pub fn new(schemas: Vec<AgentSchema>) -> Self {
        let agents = schemas.iter().map(|s| AgentData::zeroed(s, 0)).collect();
        World { schemas, agents, step: 0 }
    }

    /// First non-finite value among property, state and accum columns: `(agent type, agent index, column name)`.
    pub fn find_non_finite(&self) -> Option<(usize, usize, String)> {
        for (t, (schema, data)) in self.schemas.iter().zip(&self.agents).enumerate() {
            let mut col = 0;
            for f in &schema.fields {
                for lane in &f.lanes {
                    if f.kind != FieldKind::Scratch {
                        if let Some(i) = data.columns[col].iter().position(|v| !v.is_finite()) {
                            return Some((t, i, lane.clone()));
                        }
                    }
                    col += 1;
                }
            }
        }
        None
    }
}
