//! One `.npy` file per agent type: a growing 2-D float64 array of `step, id, <output columns>`.
//!
//! The npy header records the shape, so the header is written with room for any row count and
//! rewritten in place after each frame's rows are on disk. Until then it still describes the
//! previous frames, and readers ignore the trailing partial rows of a frame cut short.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{check_world, create_file, create_parent, sibling, write_err};
use super::{FrameWriter, OutputError};
use crate::world::{AgentSchema, World};

/// Rows are encoded and written in pieces of about this size, so memory stays bounded for
/// large populations.
const CHUNK_BYTES: usize = 1 << 20;

struct TypeFile {
    path: PathBuf,
    columns_path: PathBuf,
    file: File,
    /// Source columns of `<output columns>`.
    sources: Vec<usize>,
    rows: u64,
    /// Total header size including magic; fixed for the life of the file.
    header_bytes: usize,
}

impl TypeFile {
    fn width(&self) -> usize {
        2 + self.sources.len()
    }

    fn header(&self) -> Vec<u8> {
        header_bytes(self.rows, self.width(), self.header_bytes)
    }
}

pub(super) struct NpyWriter {
    path: PathBuf,
    schemas: Vec<AgentSchema>,
    files: Vec<TypeFile>,
    buf: Vec<u8>,
}

fn dict(rows: u64, cols: usize) -> String {
    format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}")
}

/// Header of exactly `total` bytes (magic, version, length, dict padded with spaces, newline).
fn header_bytes(rows: u64, cols: usize, total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    let text_len = total - 10;
    // `total` comes from `header_size`, which keeps it far below u16::MAX.
    out.extend_from_slice(&(text_len as u16).to_le_bytes());
    out.extend_from_slice(dict(rows, cols).as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Smallest multiple of 64 (the npy alignment) that fits the header for any row count.
fn header_size(cols: usize) -> usize {
    let longest = 10 + dict(u64::MAX, cols).len() + 1;
    longest.div_ceil(64) * 64
}

impl NpyWriter {
    pub(super) fn create(path: &Path, schemas: &[AgentSchema]) -> Result<Self, OutputError> {
        create_parent(path)?;
        let mut files = Vec::with_capacity(schemas.len());
        for s in schemas {
            let out_cols = s.output_columns();
            let type_path = sibling(path, &s.name, "npy")?;
            let columns_path = sibling(path, &s.name, "columns.txt")?;

            let mut names = String::from("step\nid\n");
            for (_, n) in &out_cols {
                names.push_str(n);
                names.push('\n');
            }
            fs::write(&columns_path, names)
                .map_err(|source| OutputError::Create { path: columns_path.clone(), source })?;

            let sources: Vec<usize> = out_cols.iter().map(|&(c, _)| c).collect();
            let header_bytes = header_size(2 + sources.len());
            let mut tf = TypeFile {
                path: type_path.clone(),
                columns_path,
                file: create_file(&type_path)?,
                sources,
                rows: 0,
                header_bytes,
            };
            // A valid empty array from the start, so a run killed before its first frame (or a
            // type that never has agents) still leaves loadable files.
            let header = tf.header();
            tf.file.write_all(&header).map_err(write_err(&type_path))?;
            files.push(tf);
        }
        Ok(NpyWriter { path: path.to_path_buf(), schemas: schemas.to_vec(), files, buf: Vec::new() })
    }
}

impl FrameWriter for NpyWriter {
    fn write_frame(&mut self, world: &World) -> Result<(), OutputError> {
        check_world(&self.path, &self.schemas, world)?;
        let step = world.step as f64;
        for (tf, data) in self.files.iter_mut().zip(&world.agents) {
            let width = tf.width();
            let row_bytes = width * 8;
            let data_start = (tf.header_bytes as u64) + tf.rows * row_bytes as u64;
            let path = &tf.path;
            // Re-seek every frame: the previous header rewrite left the cursor at the start.
            tf.file.seek(SeekFrom::Start(data_start)).map_err(write_err(path))?;
            self.buf.clear();
            for i in 0..data.count {
                self.buf.extend_from_slice(&step.to_le_bytes());
                self.buf.extend_from_slice(&(i as f64).to_le_bytes());
                for &c in &tf.sources {
                    self.buf.extend_from_slice(&data.columns[c][i].to_le_bytes());
                }
                if self.buf.len() >= CHUNK_BYTES {
                    tf.file.write_all(&self.buf).map_err(write_err(path))?;
                    self.buf.clear();
                }
            }
            tf.file.write_all(&self.buf).map_err(write_err(path))?;
            // Only now, with every row of the frame handed to the OS, may the header claim them.
            tf.rows += data.count as u64;
            let header = tf.header();
            tf.file.seek(SeekFrom::Start(0)).map_err(write_err(path))?;
            tf.file.write_all(&header).map_err(write_err(path))?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Vec<PathBuf>, OutputError> {
        let mut out = Vec::with_capacity(2 * self.files.len());
        for tf in self.files {
            tf.file.sync_all().map_err(write_err(&tf.path))?;
            out.push(tf.path);
            out.push(tf.columns_path);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::open_writer;
    use super::super::test_support::{schemas, world};
    use super::*;

    /// Parses an npy v1.0 float64 C-order file by hand: (shape, data).
    fn read_npy(path: &Path) -> ((u64, u64), Vec<f64>) {
        let bytes = fs::read(path).expect("read npy");
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0, "data must start 64-byte aligned");
        let text = std::str::from_utf8(&bytes[10..10 + hlen]).expect("ascii header");
        assert!(text.ends_with('\n'));
        assert!(text.contains("'descr': '<f8'") && text.contains("'fortran_order': False"), "{text}");
        let shape = text.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
        let dims: Vec<u64> = shape.split(',').map(|d| d.trim().parse().expect("dim")).collect();
        assert_eq!(dims.len(), 2);
        let n = (dims[0] * dims[1]) as usize;
        let data_bytes = &bytes[10 + hlen..];
        // Anything past the declared shape would be a frame in progress; here there is none.
        assert_eq!(data_bytes.len(), n * 8);
        let data = data_bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        ((dims[0], dims[1]), data)
    }

    #[test]
    fn shape_grows_per_frame_and_file_is_valid_between_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("traj.npy");
        let ball = dir.path().join("traj.Ball.npy");
        let wall = dir.path().join("traj.Wall.npy");
        let mut w = open_writer(&path, &schemas()).expect("open");

        // Before any frame: valid, empty.
        assert_eq!(read_npy(&ball).0, (0, 6));

        w.write_frame(&world(0, 3, 0)).expect("frame 0");
        let ((rows, cols), data) = read_npy(&ball);
        assert_eq!((rows, cols), (3, 6));
        // step, id, position.x, position.y, mass, kind
        assert_eq!(&data[6..12], &[0.0, 1.0, 1.0, -1.0, 0.2, 1.0]);
        assert_eq!(read_npy(&wall).0, (0, 5));

        w.write_frame(&world(5, 3, 2)).expect("frame 5");
        w.write_frame(&world(10, 3, 2)).expect("frame 10");
        let ((rows, _), data) = read_npy(&ball);
        assert_eq!(rows, 9);
        assert_eq!(&data[8 * 6..9 * 6], &[10.0, 2.0, 3.0, -2.0, 0.1 * 3.0, 2.0]);
        let ((rows, cols), data) = read_npy(&wall);
        assert_eq!((rows, cols), (4, 5));
        // step, id, charge, position.x, position.y
        assert_eq!(&data[3 * 5..4 * 5], &[10.0, 1.0, -2.0 / 3.0 - 10.0, 101.0, 0.0]);

        let files = w.finish().expect("finish");
        assert!(files.contains(&ball) && files.contains(&wall));
        let names = fs::read_to_string(dir.path().join("traj.Wall.columns.txt")).expect("columns");
        assert_eq!(names, "step\nid\ncharge\nposition.x\nposition.y\n");
        assert!(files.contains(&dir.path().join("traj.Wall.columns.txt")));
    }

    #[test]
    fn frame_cut_short_still_reads_as_earlier_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.npy");
        let ball = dir.path().join("run.Ball.npy");
        let mut w = open_writer(&path, &schemas()).expect("open");
        w.write_frame(&world(0, 4, 1)).expect("frame 0");
        w.write_frame(&world(1, 4, 1)).expect("frame 1");
        // What a kill in the middle of the next frame leaves: some rows, header not yet updated.
        let mut f = fs::OpenOptions::new().append(true).open(&ball).expect("open for append");
        f.write_all(&[0u8; 8 * 6 + 20]).expect("append");
        drop(f);

        // An independent reader and our own spawn-file reader both see exactly two frames.
        let npy = npyz::NpyFile::new(fs::File::open(&ball).expect("open")).expect("header");
        assert_eq!(npy.shape(), &[8, 6]);
        let data: Vec<f64> = npy.into_vec().expect("data");
        assert_eq!(data.len(), 48);
        assert_eq!(&data[42..], &[1.0, 3.0, 3.1, -3.0, 0.4, 3.0]);

        let names: Vec<String> = fs::read_to_string(dir.path().join("run.Ball.columns.txt"))
            .expect("columns")
            .lines()
            .map(String::from)
            .collect();
        let t = crate::input::read_table(&ball, &names).expect("read back");
        assert_eq!(t.rows, 8);
        assert_eq!(t.column("mass").map(|m| m[7]), Some(0.1 * 4.0));
    }

    #[test]
    fn header_has_room_for_any_row_count() {
        for cols in [2, 7, 1000] {
            let size = header_size(cols);
            assert_eq!(size % 64, 0);
            let h = header_bytes(u64::MAX, cols, size);
            assert_eq!(h.len(), size);
            assert_eq!(h.last(), Some(&b'\n'));
        }
    }
}
