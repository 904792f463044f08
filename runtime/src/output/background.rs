//! Frames written on a thread of their own, so that a run keeps stepping while a frame is
//! formatted and written.

use super::{FrameWriter, OutputError};
use crate::World;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

/// A writer on its own thread. One frame may wait while another is written, which bounds the
/// memory held to two copies of the state; `finish` writes whatever is queued before it returns,
/// so an interrupted run still keeps every frame it handed over.
pub struct BackgroundWriter {
    frames: Option<SyncSender<World>>,
    thread: Option<JoinHandle<Result<Vec<PathBuf>, OutputError>>>,
}

impl BackgroundWriter {
    pub fn new(mut writer: Box<dyn FrameWriter>) -> Self {
        let (frames, queue) = sync_channel::<World>(1);
        let thread = std::thread::spawn(move || {
            for world in queue {
                writer.write_frame(&world)?;
            }
            writer.finish()
        });
        BackgroundWriter { frames: Some(frames), thread: Some(thread) }
    }

    /// Hands a frame over; waits only while an earlier frame is still queued. A writer that has
    /// failed gives its error here.
    pub fn write(&mut self, world: World) -> Result<(), OutputError> {
        let sent = self.frames.as_ref().is_some_and(|f| f.send(world).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped, which it does only after an error.
        self.frames = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(OutputError::Invalid { path: PathBuf::new(), message: "the frame writer stopped".into() }),
        }
    }

    /// Writes what is queued, closes the files and returns them.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, OutputError> {
        self.frames = None;
        self.join()
    }

    fn join(&mut self) -> Result<Vec<PathBuf>, OutputError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => {
                Err(OutputError::Invalid { path: PathBuf::new(), message: "the frame writer thread panicked".into() })
            }
            None => Err(OutputError::Invalid { path: PathBuf::new(), message: "the frame writer was closed".into() }),
        }
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        self.frames = None;
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Recorder(Arc<Mutex<Vec<u64>>>, Option<u64>);

    impl FrameWriter for Recorder {
        fn write_frame(&mut self, world: &World) -> Result<(), OutputError> {
            if Some(world.step) == self.1 {
                return Err(OutputError::Invalid { path: PathBuf::from("x"), message: "disk full".into() });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.0.lock().unwrap().push(world.step);
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
            Ok(vec![PathBuf::from("x")])
        }
    }

    fn world(step: u64) -> World {
        let mut w = World::new(Vec::new());
        w.step = step;
        w
    }

    #[test]
    fn every_frame_handed_over_is_written_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut w = BackgroundWriter::new(Box::new(Recorder(seen.clone(), None)));
        for s in 0..10 {
            w.write(world(s)).unwrap();
        }
        assert_eq!(w.finish().unwrap(), vec![PathBuf::from("x")]);
        assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<u64>>());
    }

    #[test]
    fn a_failed_write_is_reported() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut w = BackgroundWriter::new(Box::new(Recorder(seen, Some(3))));
        let mut failed = None;
        for s in 0..50 {
            if let Err(e) = w.write(world(s)) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => w.finish().expect_err("the writer failed at frame 3"),
        };
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
