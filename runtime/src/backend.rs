//! What every executor offers the run loop: take steps, show the state, spot non-finite values.

use crate::ir::interp::{Interp, RunError};
use crate::World;

pub trait Backend {
    /// A short name for messages and benchmarks (`interp`, `cpu`).
    fn name(&self) -> String;
    /// Runs the module's step schedule once.
    fn step(&mut self) -> Result<(), RunError>;
    /// Runs the first force passes (`Module::prime`), once, before the first step.
    fn prime(&mut self) -> Result<(), RunError>;
    /// The current state, brought back from the device where it lives elsewhere.
    fn world(&mut self) -> Result<&World, RunError>;
    /// The first non-finite value: `(agent type, agent index, column name)`. Executors whose
    /// state lives on a device may look only every few steps (and whenever it is read back).
    fn find_non_finite(&mut self) -> Result<Option<(usize, usize, String)>, RunError>;
    /// Starts bringing the current state back for a frame. Executors that can copy it while the
    /// device goes on stepping return `None` and hand it over in `take_frame`; the others
    /// return it at once.
    fn begin_frame(&mut self) -> Result<Option<World>, RunError> {
        self.world().map(|w| Some(w.clone()))
    }
    /// The frame `begin_frame` started, once its copy has arrived (`None` if none was started).
    fn take_frame(&mut self) -> Result<Option<World>, RunError> {
        Ok(None)
    }
    /// Measures the conservation laws where the state lives; `None` where this executor cannot,
    /// and the caller measures its state on the host.
    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        Ok(None)
    }
    /// What the executor decided on its own that the user should hear (the precision
    /// `@precision(auto)` chose, with the error it measured).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Measures again, on the current state, the precision `@precision(auto)` chose, and moves
    /// to a more accurate one where the error grew past the tolerance; returns what changed.
    fn recheck_precisions(&mut self, _step: u64) -> Result<Vec<String>, RunError> {
        Ok(Vec::new())
    }
    /// Waits until every step asked for has run.
    fn finish(&mut self) -> Result<(), RunError> {
        Ok(())
    }
    /// Runs `steps` steps timed by the device's own clock: seconds, or `None` without one.
    fn device_seconds(&mut self, _steps: u64) -> Option<Result<f64, RunError>> {
        None
    }
}

impl Backend for Interp<'_> {
    fn name(&self) -> String {
        "interp".into()
    }
    fn step(&mut self) -> Result<(), RunError> {
        Interp::step(self)
    }
    fn prime(&mut self) -> Result<(), RunError> {
        Interp::prime(self)
    }
    fn world(&mut self) -> Result<&World, RunError> {
        Ok(&self.world)
    }
    fn find_non_finite(&mut self) -> Result<Option<(usize, usize, String)>, RunError> {
        Ok(self.world.find_non_finite())
    }
    fn laws(&mut self) -> Result<Option<Vec<crate::monitor::LawSample>>, RunError> {
        Interp::laws(self).map(Some)
    }
    fn notes(&self) -> Vec<String> {
        self.hosted.as_ref().map(|h| h.notes(self.module)).unwrap_or_default()
    }
}
