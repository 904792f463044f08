//! Trajectory writers.
//!
//! Long runs get interrupted, so every writer leaves complete, readable files on disk after each
//! `write_frame` returns: a kill between frames loses nothing, and a kill in the middle of a frame
//! loses at most that frame.

mod background;
mod csv;
mod npy;
mod vtk;
mod xyz;

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::world::{AgentSchema, World};

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("cannot create directory {}: {source}", .path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot create {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: unknown output format; use one of .csv .npy .xyz .vtk", .path.display())]
    Extension { path: PathBuf },
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

pub use background::BackgroundWriter;

pub trait FrameWriter: Send {
    /// Appends the state of `world` as frame number `world.step`.
    fn write_frame(&mut self, world: &World) -> Result<(), OutputError>;
    /// Flushes and closes; returns every file written.
    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError>;
}

/// Opens a trajectory writer chosen by the extension of `path`.
///
/// Formats that need one file per agent type or per frame derive those names from `path`
/// (`traj.npy` gives `traj.Ball.npy`, `traj.vtk` gives `traj.000010.vtk`).
pub fn open_writer(path: &Path, schemas: &[AgentSchema]) -> Result<Box<dyn FrameWriter>, OutputError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    let writer: Box<dyn FrameWriter> = match ext.as_deref() {
        Some("csv") => Box::new(csv::CsvWriter::create(path, schemas)?),
        Some("npy") => Box::new(npy::NpyWriter::create(path, schemas)?),
        Some("xyz") => Box::new(xyz::XyzWriter::create(path, schemas)?),
        Some("vtk") => Box::new(vtk::VtkWriter::create(path, schemas)?),
        _ => return Err(OutputError::Extension { path: path.to_path_buf() }),
    };
    Ok(writer)
}

fn create_parent(path: &Path) -> Result<(), OutputError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            fs::create_dir_all(dir).map_err(|source| OutputError::CreateDir { path: dir.to_path_buf(), source })
        }
        _ => Ok(()),
    }
}

fn create_file(path: &Path) -> Result<fs::File, OutputError> {
    create_parent(path)?;
    fs::File::create(path).map_err(|source| OutputError::Create { path: path.to_path_buf(), source })
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Write { path: path.to_path_buf(), source }
}

/// `dir/stem.<middle>.<ext>` for `dir/stem.whatever`.
fn sibling(path: &Path, middle: &str, ext: &str) -> Result<PathBuf, OutputError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| OutputError::Invalid {
        path: path.to_path_buf(),
        message: "output path needs a file name".to_string(),
    })?;
    Ok(path.with_file_name(format!("{stem}.{middle}.{ext}")))
}

/// A frame built from different schemas than the writer was opened with would silently write
/// columns under the wrong names, or index out of bounds.
fn check_world(path: &Path, schemas: &[AgentSchema], world: &World) -> Result<(), OutputError> {
    let bad = |message: String| Err(OutputError::Invalid { path: path.to_path_buf(), message });
    if world.schemas.len() != schemas.len() || world.agents.len() != schemas.len() {
        return bad(format!(
            "frame has {} agent types but the writer was opened for {}",
            world.agents.len(),
            schemas.len()
        ));
    }
    for ((s, ws), data) in schemas.iter().zip(&world.schemas).zip(&world.agents) {
        if s.name != ws.name || s.column_count() != ws.column_count() {
            return bad(format!("frame's agent type '{}' does not match the writer's '{}'", ws.name, s.name));
        }
        if data.columns.len() != s.column_count() || data.columns.iter().any(|c| c.len() != data.count) {
            return bad(format!("agent type '{}': column data does not match count {}", s.name, data.count));
        }
    }
    Ok(())
}

/// Appends `v` so that parsing the text gives back exactly `v`.
///
/// Integral fields are written without a fraction; everything else uses Rust's shortest
/// round-trip digits, switching to exponent form where plain form would be long (`{}` never
/// uses an exponent, so 1e300 would take 301 characters).
fn push_number(out: &mut String, v: f64, integral: bool) {
    // Written this way round so a NaN is never taken for an integer.
    let fits_i64 = v.abs() < 9.0e18;
    // `write!` to a String cannot fail.
    let _ = if integral && fits_i64 && v.fract() == 0.0 {
        write!(out, "{}", v as i64)
    } else if v != 0.0 && v.is_finite() && !(1e-5..1e16).contains(&v.abs()) {
        write!(out, "{v:e}")
    } else {
        write!(out, "{v}")
    };
}

/// Union of column names over agent types, first occurrence first.
fn union_columns<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Per agent type, per union column: the type's source column and whether it is integral, or
/// `None` where the type lacks that column.
type ColumnMap = Vec<Vec<Option<(usize, bool)>>>;

/// Builds the [`ColumnMap`] for `union`, ignoring columns for which `skip` is true.
fn column_map(schemas: &[AgentSchema], union: &[String], skip: impl Fn(&AgentSchema, usize) -> bool) -> ColumnMap {
    schemas
        .iter()
        .map(|s| {
            let integral = integral_columns(s);
            let cols: Vec<(usize, &str)> = s.output_columns().into_iter().filter(|&(c, _)| !skip(s, c)).collect();
            union.iter().map(|u| cols.iter().find(|(_, n)| *n == u).map(|&(c, _)| (c, integral[c]))).collect()
        })
        .collect()
}

/// Integral flag of every column of `s`, by column index.
fn integral_columns(s: &AgentSchema) -> Vec<bool> {
    s.fields.iter().flat_map(|f| f.lanes.iter().map(move |_| f.integral)).collect()
}

/// Column indices of the output `position` lanes of `s` (at most 3), if it has one.
fn position_columns(s: &AgentSchema) -> Vec<usize> {
    match s.field("position") {
        Some((i, f)) if f.kind.is_output() => {
            let start = s.column_offsets()[i];
            (start..start + f.lanes.len().min(3)).collect()
        }
        _ => Vec::new(),
    }
}

/// Output columns of all types other than position lanes: what xyz and vtk carry per point.
fn non_position_union(schemas: &[AgentSchema]) -> (Vec<String>, ColumnMap) {
    let positions: Vec<Vec<usize>> = schemas.iter().map(position_columns).collect();
    let union = union_columns(
        schemas
            .iter()
            .zip(&positions)
            .flat_map(|(s, pos)| s.output_columns().into_iter().filter(|(c, _)| !pos.contains(c)).map(|(_, n)| n)),
    );
    let map = column_map(schemas, &union, |s, c| position_columns(s).contains(&c));
    (union, map)
}

/// Names that must be a single token in xyz and vtk headers.
fn token_name(name: &str) -> String {
    name.chars().map(|c| if c == '.' || c.is_whitespace() || c == ':' || c == '=' { '_' } else { c }).collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::world::{AgentData, AgentSchema, FieldKind, FieldSchema, World};

    fn field(name: &str, kind: FieldKind, lanes: &[&str], integral: bool) -> FieldSchema {
        FieldSchema { name: name.to_string(), kind, lanes: lanes.iter().map(|l| l.to_string()).collect(), integral }
    }

    /// Two agent types sharing `position.*` but otherwise different, with accum and scratch
    /// columns that must never reach outputs.
    pub fn schemas() -> Vec<AgentSchema> {
        vec![
            AgentSchema {
                name: "Ball".to_string(),
                fields: vec![
                    field("position", FieldKind::State, &["position.x", "position.y"], false),
                    field("force", FieldKind::Accum, &["force.x", "force.y"], false),
                    field("mass", FieldKind::Property, &["mass"], false),
                    field("kind", FieldKind::Property, &["kind"], true),
                ],
            },
            AgentSchema {
                name: "Wall".to_string(),
                fields: vec![
                    field("tmp", FieldKind::Scratch, &["tmp"], false),
                    field("charge", FieldKind::State, &["charge"], false),
                    field("position", FieldKind::Property, &["position.x", "position.y"], false),
                ],
            },
        ]
    }

    /// Ball `i` at step `s`: position (i + s/10, -i), mass 0.1 * (i+1), kind i.
    /// Wall `i`: charge -1/3 * (i+1) - s, position (100 + i, 0).
    pub fn world(step: u64, balls: usize, walls: usize) -> World {
        let schemas = schemas();
        let mut w = World::new(schemas.clone());
        w.step = step;
        let s = step as f64;
        let mut b = AgentData::zeroed(&schemas[0], balls);
        for i in 0..balls {
            let fi = i as f64;
            b.columns[0][i] = fi + s / 10.0;
            b.columns[1][i] = -fi;
            b.columns[2][i] = 99.0;
            b.columns[3][i] = 99.0;
            b.columns[4][i] = 0.1 * (fi + 1.0);
            b.columns[5][i] = fi;
        }
        let mut wl = AgentData::zeroed(&schemas[1], walls);
        for i in 0..walls {
            let fi = i as f64;
            wl.columns[0][i] = 42.0;
            wl.columns[1][i] = -(fi + 1.0) / 3.0 - s;
            wl.columns[2][i] = 100.0 + fi;
            wl.columns[3][i] = 0.0;
        }
        w.agents = vec![b, wl];
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for v in [0.0, -0.0, 1.0, 0.1, 1.0 / 3.0, 1e300, -2.5e-300, 1e-5, 9.99e15, 1e16, 123456.789] {
            let mut s = String::new();
            push_number(&mut s, v, false);
            assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
            assert!(s.len() <= 24, "{s}");
        }
        let mut s = String::new();
        push_number(&mut s, 3.0, true);
        s.push(' ');
        push_number(&mut s, -1e18, true);
        s.push(' ');
        push_number(&mut s, 2.5, true);
        s.push(' ');
        push_number(&mut s, f64::NAN, true);
        assert_eq!(s, "3 -1000000000000000000 2.5 NaN");
    }

    #[test]
    fn unknown_extension_lists_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = open_writer(&dir.path().join("t.h5"), &test_support::schemas()).err().expect("must fail");
        let msg = err.to_string();
        for ext in [".csv", ".npy", ".xyz", ".vtk"] {
            assert!(msg.contains(ext), "{msg}");
        }
    }

    #[test]
    fn creates_missing_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a").join("b").join("t.csv");
        let w = open_writer(&path, &test_support::schemas()).expect("open");
        assert_eq!(w.finish().expect("finish"), vec![path.clone()]);
        assert!(path.exists());
    }

    #[test]
    fn unwritable_directory_is_reported_with_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "x").expect("write");
        let path = blocker.join("t.xyz");
        let msg = open_writer(&path, &test_support::schemas()).err().expect("must fail").to_string();
        assert!(msg.contains("file"), "{msg}");
        assert!(msg.starts_with("cannot create"), "{msg}");
    }

    #[test]
    fn mismatched_world_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = open_writer(&dir.path().join("t.csv"), &test_support::schemas()).expect("open");
        let mut world = test_support::world(0, 2, 1);
        world.agents[0].columns.pop();
        let err = w.write_frame(&world).expect_err("must fail");
        assert!(err.to_string().contains("Ball"), "{err}");
    }
}
