//! One long CSV table: a row per agent per frame.
//!
//! Agent types with different fields share one file through a union header, so a shared column
//! such as `position.x` can be plotted across types without a join.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{check_world, column_map, create_file, push_number, union_columns, write_err};
use super::{ColumnMap, FrameWriter, OutputError};
use crate::world::{AgentSchema, World};

pub(super) struct CsvWriter {
    path: PathBuf,
    schemas: Vec<AgentSchema>,
    map: ColumnMap,
    out: BufWriter<File>,
    line: String,
}

impl CsvWriter {
    pub(super) fn create(path: &Path, schemas: &[AgentSchema]) -> Result<Self, OutputError> {
        let union = union_columns(schemas.iter().flat_map(|s| s.output_columns().into_iter().map(|(_, n)| n)));
        let map = column_map(schemas, &union, |_, _| false);
        let file = create_file(path)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut header = String::from("step,agent,id");
        for name in &union {
            header.push(',');
            push_field(&mut header, name);
        }
        header.push('\n');
        // The header goes out at once so that even a run killed before its first frame leaves a
        // well-formed (empty) table.
        out.write_all(header.as_bytes()).map_err(write_err(path))?;
        out.flush().map_err(write_err(path))?;
        Ok(CsvWriter { path: path.to_path_buf(), schemas: schemas.to_vec(), map, out, line: String::new() })
    }
}

/// Quotes a text cell only when CSV requires it.
fn push_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

impl FrameWriter for CsvWriter {
    fn write_frame(&mut self, world: &World) -> Result<(), OutputError> {
        check_world(&self.path, &self.schemas, world)?;
        let mut prefix = String::new();
        for ((schema, data), map) in self.schemas.iter().zip(&world.agents).zip(&self.map) {
            prefix.clear();
            push_number(&mut prefix, world.step as f64, true);
            prefix.push(',');
            push_field(&mut prefix, &schema.name);
            prefix.push(',');
            for i in 0..data.count {
                let line = &mut self.line;
                line.clear();
                line.push_str(&prefix);
                push_number(line, i as f64, true);
                for cell in map {
                    line.push(',');
                    if let Some((c, integral)) = *cell {
                        push_number(line, data.columns[c][i], integral);
                    }
                }
                line.push('\n');
                self.out.write_all(line.as_bytes()).map_err(write_err(&self.path))?;
            }
        }
        self.out.flush().map_err(write_err(&self.path))
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        let CsvWriter { path, out, .. } = *self;
        let file = out.into_inner().map_err(|e| write_err(&path)(e.into_error()))?;
        file.sync_all().map_err(write_err(&path))?;
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests {
    use super::super::open_writer;
    use super::super::test_support::{schemas, world};

    #[test]
    fn two_frames_two_types_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("traj.csv");
        let mut w = open_writer(&path, &schemas()).expect("open");
        w.write_frame(&world(0, 3, 2)).expect("frame 0");

        // Readable and complete before `finish`, as after an interrupted run.
        let mut r = csv::Reader::from_path(&path).expect("read");
        assert_eq!(r.records().count(), 5);

        w.write_frame(&world(10, 3, 2)).expect("frame 10");
        assert_eq!(w.finish().expect("finish"), vec![path.clone()]);

        let mut r = csv::Reader::from_path(&path).expect("read");
        let header: Vec<String> = r.headers().expect("header").iter().map(String::from).collect();
        assert_eq!(header, ["step", "agent", "id", "position.x", "position.y", "mass", "kind", "charge"]);
        let rows: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().expect("records");
        assert_eq!(rows.len(), 10);

        let num = |s: &str| s.parse::<f64>().expect("number");
        for (k, row) in rows.iter().enumerate() {
            let step = if k < 5 { 0.0 } else { 10.0 };
            assert_eq!(num(&row[0]), step);
            let j = k % 5;
            if j < 3 {
                let i = j as f64;
                assert_eq!(&row[1], "Ball");
                assert_eq!(&row[2], j.to_string());
                assert_eq!(num(&row[3]), i + step / 10.0);
                assert_eq!(num(&row[4]), -i);
                assert_eq!(num(&row[5]), 0.1 * (i + 1.0));
                // Integral fields carry no fraction.
                assert_eq!(&row[6], j.to_string());
                assert_eq!(&row[7], "");
            } else {
                let i = (j - 3) as f64;
                assert_eq!(&row[1], "Wall");
                assert_eq!(&row[2], (j - 3).to_string());
                assert_eq!(num(&row[3]), 100.0 + i);
                assert_eq!(num(&row[4]), 0.0);
                assert_eq!(&row[5], "");
                assert_eq!(&row[6], "");
                assert_eq!(num(&row[7]), -(i + 1.0) / 3.0 - step);
            }
        }
    }
}
