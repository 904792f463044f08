//! What a name means inside a body being checked.

use super::hir::{FieldId, Local, LocalId, Slot};
use super::types::{AgentId, Ty};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub enum Binding {
    Local(LocalId),
    /// An agent of the kernel (`a` in `interaction f(a: Body) each`).
    Agent(Slot, AgentId),
    /// A field by its bare name: inside `derive` expressions, and integrator aliases (`x`, `v`).
    Field(Slot, FieldId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Interaction,
    Function,
    Potential,
    Integrator,
    Law,
    Init,
    Const,
}

/// The state of one body under check: its locals and the scopes of names.
pub struct BodyCx {
    pub mode: Mode,
    pub locals: Vec<Local>,
    pub scopes: Vec<HashMap<String, Binding>>,
    /// The stdlib module whose constants back this body's free names (None: the user's system).
    pub module: Option<usize>,
    /// Agents bound by the kernel, by slot.
    pub slots: Vec<AgentId>,
    /// Fns and potentials being inlined, to refuse recursion.
    pub inlining: Vec<String>,
    /// Derive fields being expanded, to refuse cycles.
    pub deriving: Vec<(AgentId, FieldId)>,
}

impl BodyCx {
    pub fn new(mode: Mode) -> Self {
        BodyCx {
            mode,
            locals: Vec::new(),
            scopes: vec![HashMap::new()],
            module: None,
            slots: Vec::new(),
            inlining: Vec::new(),
            deriving: Vec::new(),
        }
    }

    pub fn lookup(&self, name: &str) -> Option<&Binding> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    pub fn bind(&mut self, name: &str, b: Binding) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_string(), b);
        }
    }

    pub fn new_local(&mut self, name: &str, ty: Ty) -> LocalId {
        self.locals.push(Local { name: name.to_string(), ty });
        self.locals.len() - 1
    }

    /// Declares a local and binds its name in the innermost scope.
    pub fn declare(&mut self, name: &str, ty: Ty) -> LocalId {
        let id = self.new_local(name, ty);
        self.bind(name, Binding::Local(id));
        id
    }

    pub fn push(&mut self) {
        self.scopes.push(HashMap::new());
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    pub fn add_slot(&mut self, agent: AgentId) -> Slot {
        self.slots.push(agent);
        (self.slots.len() - 1) as Slot
    }
}
