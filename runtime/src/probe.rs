//! What looking for a backend's devices found. Three answers, because they call for different
//! reactions: devices to run on; none on this machine (no loader, driver or device: a reason to
//! skip); or a loader or driver that is there but failed (something is broken, and saying "none"
//! would hide it).

pub enum Probe<T> {
    Found(Vec<T>),
    Absent(String),
    Broken(String),
}

impl<T> Probe<T> {
    /// Classifies a device listing: `absent` tells the errors that only mean "not installed
    /// here"; an empty list is absent with `none`.
    pub fn classify<E: std::fmt::Display>(listing: Result<Vec<T>, E>, absent: impl Fn(&E) -> bool, none: &str) -> Self {
        match listing {
            Ok(list) if list.is_empty() => Probe::Absent(none.to_string()),
            Ok(list) => Probe::Found(list),
            Err(e) if absent(&e) => Probe::Absent(e.to_string()),
            Err(e) => Probe::Broken(e.to_string()),
        }
    }
}
