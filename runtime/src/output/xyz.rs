//! Extended XYZ (as read by ASE and OVITO): all agent types in one file, one block per frame.
//!
//! Every line of a block must have the columns its `Properties` line announces, so agent types
//! share the union of their non-position columns, with 0 where a type lacks one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{check_world, create_file, non_position_union, position_columns, push_number, token_name, write_err};
use super::{ColumnMap, FrameWriter, OutputError};
use crate::world::{AgentSchema, World};

pub(super) struct XyzWriter {
    path: PathBuf,
    schemas: Vec<AgentSchema>,
    positions: Vec<Vec<usize>>,
    map: ColumnMap,
    /// The part of line 2 that does not change between frames.
    properties: String,
    out: BufWriter<File>,
    line: String,
}

impl XyzWriter {
    pub(super) fn create(path: &Path, schemas: &[AgentSchema]) -> Result<Self, OutputError> {
        let (union, map) = non_position_union(schemas);
        let mut properties = String::from("Properties=species:S:1:pos:R:3");
        for name in &union {
            properties.push(':');
            properties.push_str(&token_name(name));
            properties.push_str(":R:1");
        }
        let file = create_file(path)?;
        Ok(XyzWriter {
            path: path.to_path_buf(),
            schemas: schemas.to_vec(),
            positions: schemas.iter().map(position_columns).collect(),
            map,
            properties,
            out: BufWriter::with_capacity(1 << 16, file),
            line: String::new(),
        })
    }
}

impl FrameWriter for XyzWriter {
    fn write_frame(&mut self, world: &World) -> Result<(), OutputError> {
        check_world(&self.path, &self.schemas, world)?;
        let total: usize = world.agents.iter().map(|a| a.count).sum();
        let header = format!("{total}\n{} Time={} step={}\n", self.properties, world.step, world.step);
        self.out.write_all(header.as_bytes()).map_err(write_err(&self.path))?;
        for (((schema, data), pos), map) in self.schemas.iter().zip(&world.agents).zip(&self.positions).zip(&self.map) {
            // Species must be one token; agent type names are identifiers, but be safe.
            let species = super::token_name(&schema.name);
            for i in 0..data.count {
                let line = &mut self.line;
                line.clear();
                line.push_str(&species);
                for k in 0..3 {
                    line.push(' ');
                    push_number(line, pos.get(k).map_or(0.0, |&c| data.columns[c][i]), false);
                }
                for cell in map {
                    line.push(' ');
                    match *cell {
                        Some((c, integral)) => push_number(line, data.columns[c][i], integral),
                        None => line.push('0'),
                    }
                }
                line.push('\n');
                self.out.write_all(line.as_bytes()).map_err(write_err(&self.path))?;
            }
        }
        self.out.flush().map_err(write_err(&self.path))
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        let XyzWriter { path, out, .. } = *self;
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
    fn frames_and_line_structure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("traj.xyz");
        let mut w = open_writer(&path, &schemas()).expect("open");
        let frames = [(0, 2, 1), (7, 3, 2), (14, 0, 0)];
        for (k, &(step, balls, walls)) in frames.iter().enumerate() {
            w.write_frame(&world(step, balls, walls)).expect("frame");
            // Complete frames on disk after each call, before finish.
            let text = std::fs::read_to_string(&path).expect("read");
            let mut lines = text.lines();
            let mut seen = 0;
            while let Some(count) = lines.next() {
                let count: usize = count.parse().expect("count line");
                let info = lines.next().expect("info line");
                assert!(info.starts_with("Properties=species:S:1:pos:R:3:mass:R:1:kind:R:1:charge:R:1 "), "{info}");
                assert!(info.contains(&format!("step={}", frames[seen].0)), "{info}");
                assert!(info.contains(&format!("Time={}", frames[seen].0)), "{info}");
                for _ in 0..count {
                    let cols: Vec<&str> = lines.next().expect("agent line").split(' ').collect();
                    assert_eq!(cols.len(), 7, "{cols:?}");
                    for c in &cols[1..] {
                        c.parse::<f64>().expect("number");
                    }
                }
                seen += 1;
            }
            assert_eq!(seen, k + 1);
        }
        w.finish().expect("finish");

        let text = std::fs::read_to_string(&path).expect("read");
        let block: Vec<&str> = text.lines().skip(5).take(7).collect();
        assert_eq!(block[0], "5");
        // Ball 1 at step 7: position (1.7, -1), mass 0.2, kind 1, no charge.
        assert_eq!(block[3], "Ball 1.7 -1 0 0.2 1 0");
        // Wall 0 at step 7: position (100, 0), charge -1/3 - 7.
        let wall: Vec<&str> = block[5].split(' ').collect();
        assert_eq!(&wall[..6], &["Wall", "100", "0", "0", "0", "0"]);
        assert_eq!(wall[6].parse::<f64>().expect("charge"), -1.0 / 3.0 - 7.0);
    }
}
