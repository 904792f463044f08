//! Legacy ASCII VTK POLYDATA, one file per frame (`traj.000042.vtk`), for ParaView and VisIt.
//!
//! Each frame is written under a temporary name and renamed into place, so a file with a frame's
//! name is always complete; ParaView groups the numbered files into a time series.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{
    check_world, create_parent, non_position_union, position_columns, push_number, sibling, token_name, write_err,
};
use super::{ColumnMap, FrameWriter, OutputError};
use crate::world::{AgentSchema, World};

/// Legacy VTK readers reject a title line longer than this.
const MAX_TITLE: usize = 255;

pub(super) struct VtkWriter {
    path: PathBuf,
    schemas: Vec<AgentSchema>,
    positions: Vec<Vec<usize>>,
    union: Vec<String>,
    map: ColumnMap,
    written: Vec<PathBuf>,
    text: String,
}

impl VtkWriter {
    pub(super) fn create(path: &Path, schemas: &[AgentSchema]) -> Result<Self, OutputError> {
        // Fail at open, not after the first step, when the name or directory is unusable.
        sibling(path, "000000", "vtk")?;
        create_parent(path)?;
        let (union, map) = non_position_union(schemas);
        Ok(VtkWriter {
            path: path.to_path_buf(),
            schemas: schemas.to_vec(),
            positions: schemas.iter().map(position_columns).collect(),
            union,
            map,
            written: Vec::new(),
            text: String::new(),
        })
    }

    fn frame_path(&self, step: u64) -> Result<PathBuf, OutputError> {
        sibling(&self.path, &format!("{step:06}"), "vtk")
    }

    fn title(&self, step: u64) -> String {
        let mut t = format!("aiic step {step}; agent_type");
        for (k, s) in self.schemas.iter().enumerate() {
            t.push_str(&format!(" {k}={}", s.name));
        }
        // The type legend is a courtesy; the step must survive truncation.
        if t.len() > MAX_TITLE {
            t = format!("aiic step {step}");
        }
        t
    }
}

fn write_file(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(text)?;
    out.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

impl FrameWriter for VtkWriter {
    fn write_frame(&mut self, world: &World) -> Result<(), OutputError> {
        check_world(&self.path, &self.schemas, world)?;
        let total: usize = world.agents.iter().map(|a| a.count).sum();
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        text.push_str("# vtk DataFile Version 3.0\n");
        text.push_str(&self.title(world.step));
        text.push_str("\nASCII\nDATASET POLYDATA\n");
        text.push_str(&format!("POINTS {total} double\n"));
        for (data, pos) in world.agents.iter().zip(&self.positions) {
            for i in 0..data.count {
                for k in 0..3 {
                    if k > 0 {
                        text.push(' ');
                    }
                    push_number(&mut text, pos.get(k).map_or(0.0, |&c| data.columns[c][i]), false);
                }
                text.push('\n');
            }
        }
        text.push_str(&format!("VERTICES {total} {}\n", 2 * total));
        for i in 0..total {
            text.push_str(&format!("1 {i}\n"));
        }
        text.push_str(&format!("POINT_DATA {total}\nSCALARS agent_type int 1\nLOOKUP_TABLE default\n"));
        for (t, data) in world.agents.iter().enumerate() {
            for _ in 0..data.count {
                text.push_str(&format!("{t}\n"));
            }
        }
        for (u, name) in self.union.iter().enumerate() {
            text.push_str(&format!("SCALARS {} double 1\nLOOKUP_TABLE default\n", token_name(name)));
            for (data, map) in world.agents.iter().zip(&self.map) {
                for i in 0..data.count {
                    match map[u] {
                        Some((c, integral)) => push_number(&mut text, data.columns[c][i], integral),
                        None => text.push('0'),
                    }
                    text.push('\n');
                }
            }
        }

        let path = self.frame_path(world.step)?;
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("frame.vtk");
        // Hidden and in the same directory, so the rename is atomic and viewers scanning the
        // directory for `*.vtk` never pick up a half-written frame.
        let tmp = path.with_file_name(format!(".{file_name}.tmp"));
        let result = write_file(&tmp, text.as_bytes()).and_then(|()| fs::rename(&tmp, &path));
        self.text = text;
        if let Err(source) = result {
            // Best effort: the write already failed, and a stray temp file is harmless.
            let _ = fs::remove_file(&tmp);
            return Err(write_err(&path)(source));
        }
        if !self.written.contains(&path) {
            self.written.push(path);
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::super::open_writer;
    use super::super::test_support::{schemas, world};

    #[test]
    fn one_complete_file_per_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out").join("traj.vtk");
        let mut w = open_writer(&path, &schemas()).expect("open");
        w.write_frame(&world(0, 2, 1)).expect("frame 0");
        w.write_frame(&world(25, 1, 1)).expect("frame 25");
        let files = w.finish().expect("finish");
        let f0 = dir.path().join("out").join("traj.000000.vtk");
        let f25 = dir.path().join("out").join("traj.000025.vtk");
        assert_eq!(files, vec![f0.clone(), f25]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());

        let text = std::fs::read_to_string(&f0).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# vtk DataFile Version 3.0");
        assert_eq!(lines[1], "aiic step 0; agent_type 0=Ball 1=Wall");
        assert_eq!(&lines[2..5], &["ASCII", "DATASET POLYDATA", "POINTS 3 double"]);
        assert_eq!(&lines[5..8], &["0 -0 0", "1 -1 0", "100 0 0"]);
        assert_eq!(&lines[8..12], &["VERTICES 3 6", "1 0", "1 1", "1 2"]);
        assert_eq!(&lines[12..17], &["POINT_DATA 3", "SCALARS agent_type int 1", "LOOKUP_TABLE default", "0", "0"]);
        assert_eq!(lines[17], "1");
        assert_eq!(&lines[18..23], &["SCALARS mass double 1", "LOOKUP_TABLE default", "0.1", "0.2", "0"]);
        assert_eq!(&lines[23..28], &["SCALARS kind double 1", "LOOKUP_TABLE default", "0", "1", "0"]);
        assert_eq!(&lines[28..30], &["SCALARS charge double 1", "LOOKUP_TABLE default"]);
        assert_eq!(lines.len(), 33);
    }
}
