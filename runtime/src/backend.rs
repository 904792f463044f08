//! What every executor offers the run loop: take steps, show the state, spot non-finite values.

use crate::ir::interp::{Interp, RunError};
use crate::World;

pub trait Backend {
    /// A short name for messages and benchmarks (`interp`, `cpu`).
    fn name(&self) -> String;
    /// Runs the module's step schedule once.
    fn step(&mut self) -> Result<(), RunError>;
    /// The current state, brought back from the device where it lives elsewhere.
    fn world(&mut self) -> Result<&World, RunError>;
    /// The first non-finite value: `(agent type, agent index, column name)`.
    fn find_non_finite(&self) -> Option<(usize, usize, String)>;
}

impl Backend for Interp<'_> {
    fn name(&self) -> String {
        "interp".into()
    }
    fn step(&mut self) -> Result<(), RunError> {
        Interp::step(self)
    }
    fn world(&mut self) -> Result<&World, RunError> {
        Ok(&self.world)
    }
    fn find_non_finite(&self) -> Option<(usize, usize, String)> {
        self.world.find_non_finite()
    }
}
