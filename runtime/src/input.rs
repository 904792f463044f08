//! Spawn files: initial agent columns from `.csv` or `.npy`.
//!
//! This module only turns a file into named f64 columns; matching them against a schema (and
//! reporting missing or unknown columns) is the caller's job, since only it knows which fields
//! have defaults.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, TypeStr};
use thiserror::Error;

/// Columns read from a spawn file; `columns[c][r]` is row `r` of column `names[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
    pub rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.names.iter().position(|n| n == name).map(|i| self.columns[i].as_slice())
    }
}

#[derive(Debug, Error)]
pub enum InputError {
    #[error("{}: no such file", .path.display())]
    NotFound { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: unsupported spawn file type; use a .csv or .npy file", .path.display())]
    Extension { path: PathBuf },
    #[error("{}: {message}", .path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}:{line}: column '{column}': {message}", .path.display())]
    Cell { path: PathBuf, line: u64, column: String, message: String },
    #[error(
        "{}: array has {found} columns but {expected} were expected ({})",
        .path.display(), .names.join(", ")
    )]
    ColumnCount { path: PathBuf, expected: usize, found: usize, names: Vec<String> },
}

/// Reads a spawn file, choosing the format by extension.
///
/// For a plain 2-D `.npy` array, which has no column names, `expected` names the columns in
/// order; otherwise `expected` is not consulted.
pub fn read_table(path: &Path, expected: &[String]) -> Result<Table, InputError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(InputError::NotFound { path: path.to_path_buf() }),
        Err(source) => return Err(InputError::Io { path: path.to_path_buf(), source }),
    };
    match ext.as_deref() {
        Some("csv") => read_csv(path, file, expected),
        Some("npy") => read_npy(path, file, expected),
        _ => Err(InputError::Extension { path: path.to_path_buf() }),
    }
}

fn format_err(path: &Path, message: impl Into<String>) -> InputError {
    InputError::Format { path: path.to_path_buf(), message: message.into() }
}

fn read_csv(path: &Path, file: File, expected: &[String]) -> Result<Table, InputError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        // Lets users annotate where their initial conditions came from.
        .comment(Some(b'#'))
        .from_reader(BufReader::new(file));

    let csv_err = |e: csv::Error| -> InputError {
        let line = e.position().map(|p| p.line());
        match e.into_kind() {
            csv::ErrorKind::Io(source) => InputError::Io { path: path.to_path_buf(), source },
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format_err(
                path,
                format!(
                    "line {}: {len} cells but the header has {expected_len} columns",
                    line.map_or_else(|| "?".to_string(), |l| l.to_string())
                ),
            ),
            csv::ErrorKind::Utf8 { .. } => format_err(
                path,
                format!("line {}: not valid UTF-8", line.map_or_else(|| "?".to_string(), |l| l.to_string())),
            ),
            other => format_err(path, format!("{other:?}")),
        }
    };

    let header = reader.headers().map_err(csv_err)?.clone();
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        // Spreadsheet programs often prepend a byte-order mark that would otherwise stick to the
        // first column's name and make it unmatchable.
        let name = if i == 0 { h.trim_start_matches('\u{feff}').trim() } else { h };
        if name.is_empty() {
            return Err(format_err(path, format!("header column {} has no name", i + 1)));
        }
        if names.iter().any(|n| n == name) {
            return Err(format_err(path, format!("column '{name}' appears twice in the header")));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(format_err(path, "empty file: expected a header line of column names"));
    }

    // Columns nobody asked for (labels, notes, the `agent` column of aiic's own output) are not
    // parsed, so they may hold text.
    let wanted: Vec<bool> = names.iter().map(|n| expected.is_empty() || expected.contains(n)).collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map_or(0, |p| p.line());
        for (c, cell) in record.iter().enumerate() {
            if !wanted[c] {
                columns[c].push(f64::NAN);
                continue;
            }
            let v = parse_cell(cell).ok_or_else(|| InputError::Cell {
                path: path.to_path_buf(),
                line,
                column: names[c].clone(),
                message: if cell.is_empty() { "empty cell".to_string() } else { format!("'{cell}' is not a number") },
            })?;
            columns[c].push(v);
        }
    }
    let rows = columns[0].len();
    Ok(Table { names, columns, rows })
}

fn parse_cell(cell: &str) -> Option<f64> {
    if cell.eq_ignore_ascii_case("true") {
        Some(1.0)
    } else if cell.eq_ignore_ascii_case("false") {
        Some(0.0)
    } else {
        cell.parse().ok()
    }
}

/// How to turn one stored number into f64.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    F16,
    F32,
    F64,
    Int(usize),
    Uint(usize),
    Bool,
}

struct ScalarType {
    scalar: Scalar,
    big_endian: bool,
}

impl ScalarType {
    fn of(ts: &TypeStr) -> Option<ScalarType> {
        let size = usize::try_from(ts.size_field()).ok()?;
        let scalar = match (ts.type_char(), size) {
            (TypeChar::Float, 2) => Scalar::F16,
            (TypeChar::Float, 4) => Scalar::F32,
            (TypeChar::Float, 8) => Scalar::F64,
            (TypeChar::Int, 1 | 2 | 4 | 8) => Scalar::Int(size),
            (TypeChar::Uint, 1 | 2 | 4 | 8) => Scalar::Uint(size),
            (TypeChar::Bool, 1) => Scalar::Bool,
            _ => return None,
        };
        Some(ScalarType { scalar, big_endian: ts.endianness() == Endianness::Big })
    }

    fn size(&self) -> usize {
        match self.scalar {
            Scalar::F16 => 2,
            Scalar::F32 => 4,
            Scalar::F64 => 8,
            Scalar::Int(n) | Scalar::Uint(n) => n,
            Scalar::Bool => 1,
        }
    }

    /// `bytes` has exactly `self.size()` bytes.
    fn decode(&self, bytes: &[u8]) -> f64 {
        let mut b = [0u8; 8];
        let n = bytes.len();
        // Normalise to little-endian so one code path decodes both byte orders.
        if self.big_endian {
            for (k, &x) in bytes.iter().rev().enumerate() {
                b[k] = x;
            }
        } else {
            b[..n].copy_from_slice(bytes);
        }
        match self.scalar {
            Scalar::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
            Scalar::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Scalar::F64 => f64::from_le_bytes(b),
            Scalar::Uint(_) => u64::from_le_bytes(b) as f64,
            Scalar::Int(size) => {
                // Sign-extend by shifting the value into the top bytes and back.
                let shift = 64 - 8 * size as u32;
                ((i64::from_le_bytes(b) << shift) >> shift) as f64
            }
            Scalar::Bool => {
                if b[0] != 0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// One output column of a structured array: where it sits inside a record.
struct FieldColumn {
    name: String,
    offset: usize,
    ty: ScalarType,
}

fn read_npy(path: &Path, file: File, expected: &[String]) -> Result<Table, InputError> {
    let mut reader = BufReader::new(file);
    let header = NpyHeader::from_reader(&mut reader).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
            format_err(path, format!("not a valid .npy file: {e}"))
        } else {
            InputError::Io { path: path.to_path_buf(), source: e }
        }
    })?;
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;

    match header.dtype() {
        DType::Record(fields) => read_npy_record(path, &header, &fields, &data),
        DType::Plain(ts) => read_npy_plain(path, &header, &ts, &data, expected),
        DType::Array(..) => Err(format_err(path, "unsupported array dtype")),
    }
}

/// `x` rounded to a value of type `s` (f16 and bf16 to their nearest, integers toward zero).
pub fn round_to(s: crate::ir::Scalar, x: f64) -> f64 {
    use crate::ir::Scalar as S;
    match s {
        S::F64 => x,
        S::F32 => x as f32 as f64,
        S::F16 => half::f16::from_f64(x).to_f64(),
        S::BF16 => half::bf16::from_f64(x).to_f64(),
        S::I32 => x as i32 as f64,
        S::U32 => x as u32 as f64,
        S::Bool => f64::from(x != 0.0),
    }
}

/// A tensor saved with NumPy (`np.save`): its shape and its values in row-major (C) order.
pub fn read_tensor(path: &Path) -> Result<(Vec<usize>, Vec<f64>), InputError> {
    let file = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => InputError::NotFound { path: path.to_path_buf() },
        _ => InputError::Io { path: path.to_path_buf(), source },
    })?;
    let mut reader = BufReader::new(file);
    let header =
        NpyHeader::from_reader(&mut reader).map_err(|e| format_err(path, format!("not a valid .npy file: {e}")))?;
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;
    let DType::Plain(ts) = header.dtype() else {
        return Err(format_err(path, "a tensor must be a plain numeric array, not a structured one"));
    };
    let ty = ScalarType::of(&ts)
        .ok_or_else(|| format_err(path, format!("unsupported dtype '{ts}'; use a float, integer or bool array")))?;
    let shape: Vec<usize> = header.shape().iter().map(|&d| to_usize(path, d)).collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, "array shape is too large"))?;
    checked_len(path, &data, count, ty.size())?;
    let size = ty.size();
    let fortran = header.order() == Order::Fortran;
    let values = (0..count)
        .map(|i| {
            // Row-major index `i` as a position in the file's order.
            let at = if fortran {
                let (mut rest, mut at, mut stride) = (i, 0, 1);
                let mut digits = vec![0; shape.len()];
                for (k, &d) in shape.iter().enumerate().rev() {
                    digits[k] = rest % d.max(1);
                    rest /= d.max(1);
                }
                for (k, &d) in shape.iter().enumerate() {
                    at += digits[k] * stride;
                    stride *= d;
                }
                at
            } else {
                i
            };
            ty.decode(&data[at * size..at * size + size])
        })
        .collect();
    Ok((shape, values))
}

fn checked_len(path: &Path, data: &[u8], rows: usize, row_bytes: usize) -> Result<(), InputError> {
    let need = rows.checked_mul(row_bytes).ok_or_else(|| format_err(path, "array shape is too large"))?;
    if data.len() < need {
        return Err(format_err(
            path,
            format!("file is truncated: header promises {need} data bytes, found {}", data.len()),
        ));
    }
    Ok(())
}

fn to_usize(path: &Path, n: u64) -> Result<usize, InputError> {
    usize::try_from(n).map_err(|_| format_err(path, "array shape is too large"))
}

fn read_npy_plain(
    path: &Path,
    header: &NpyHeader,
    ts: &TypeStr,
    data: &[u8],
    expected: &[String],
) -> Result<Table, InputError> {
    let ty = ScalarType::of(ts)
        .ok_or_else(|| format_err(path, format!("unsupported dtype '{ts}'; use a float, integer or bool array")))?;
    let (rows, cols) = match *header.shape() {
        [r, c] => (to_usize(path, r)?, to_usize(path, c)?),
        // A single column is naturally saved as a 1-D array.
        [r] if expected.len() == 1 => (to_usize(path, r)?, 1),
        _ => {
            return Err(format_err(
                path,
                format!(
                    "expected a 2-D array (agents x columns) or a structured array, found shape {:?}",
                    header.shape()
                ),
            ))
        }
    };
    if cols != expected.len() {
        return Err(InputError::ColumnCount {
            path: path.to_path_buf(),
            expected: expected.len(),
            found: cols,
            names: expected.to_vec(),
        });
    }
    let size = ty.size();
    checked_len(path, data, rows, cols.saturating_mul(size))?;
    let fortran = header.order() == Order::Fortran;
    let columns = (0..cols)
        .map(|c| {
            (0..rows)
                .map(|r| {
                    let at = if fortran { c * rows + r } else { r * cols + c } * size;
                    ty.decode(&data[at..at + size])
                })
                .collect()
        })
        .collect();
    Ok(Table { names: expected.to_vec(), columns, rows })
}

fn read_npy_record(path: &Path, header: &NpyHeader, fields: &[npyz::Field], data: &[u8]) -> Result<Table, InputError> {
    let rows = match *header.shape() {
        [r] => to_usize(path, r)?,
        _ => {
            return Err(format_err(path, format!("expected a 1-D structured array, found shape {:?}", header.shape())))
        }
    };
    let mut cols: Vec<FieldColumn> = Vec::new();
    let mut offset = 0usize;
    for field in fields {
        let width = field
            .dtype
            .num_bytes()
            .ok_or_else(|| format_err(path, format!("field '{}' has no fixed size", field.name)))?;
        match &field.dtype {
            // numpy describes alignment padding as unnamed void fields.
            DType::Plain(ts) if field.name.is_empty() && ts.type_char() == TypeChar::RawData => {}
            DType::Plain(ts) => {
                let ty = ScalarType::of(ts)
                    .ok_or_else(|| format_err(path, format!("field '{}' has unsupported dtype '{ts}'", field.name)))?;
                cols.push(FieldColumn { name: field.name.clone(), offset, ty });
            }
            // A vector field saved as one sub-array, e.g. ('position', '<f8', (3,)), maps onto
            // the lane names the schema uses for vectors.
            DType::Array(n, inner) => match inner.as_ref() {
                DType::Plain(ts) => {
                    let ty0 = ScalarType::of(ts).ok_or_else(|| {
                        format_err(path, format!("field '{}' has unsupported dtype '{ts}'", field.name))
                    })?;
                    let n = to_usize(path, *n)?;
                    let size = ty0.size();
                    for k in 0..n {
                        let lane = if n <= 3 { ["x", "y", "z"][k].to_string() } else { k.to_string() };
                        let ty = ScalarType { scalar: ty0.scalar, big_endian: ty0.big_endian };
                        cols.push(FieldColumn {
                            name: format!("{}.{lane}", field.name),
                            offset: offset + k * size,
                            ty,
                        });
                    }
                }
                _ => {
                    return Err(format_err(
                        path,
                        format!("field '{}' is a nested array; only 1-D sub-arrays are supported", field.name),
                    ))
                }
            },
            DType::Record(_) => {
                return Err(format_err(
                    path,
                    format!("field '{}' is a nested record, which is not supported", field.name),
                ))
            }
        }
        offset = offset.checked_add(width).ok_or_else(|| format_err(path, "record dtype is too large"))?;
    }
    let row_bytes = offset;
    checked_len(path, data, rows, row_bytes)?;
    let columns = cols
        .iter()
        .map(|fc| {
            let size = fc.ty.size();
            (0..rows)
                .map(|r| {
                    let at = r * row_bytes + fc.offset;
                    fc.ty.decode(&data[at..at + size])
                })
                .collect()
        })
        .collect();
    Ok(Table { names: cols.into_iter().map(|c| c.name).collect(), columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    /// Minimal npy v1.0 writer so tests control exactly what numpy would have produced.
    fn write_npy(path: &Path, descr: &str, shape: &str, fortran: bool, data: &[u8]) {
        let mut dict = format!(
            "{{'descr': {descr}, 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + dict.len() + 1) % 64 != 0 {
            dict.push(' ');
        }
        dict.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).expect("write test file");
    }

    fn f64_bytes(xs: &[f64]) -> Vec<u8> {
        xs.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn csv_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spawn.csv");
        let values = [0.1, -2.5e-300, 1e300, 7.0, f64::MIN_POSITIVE, 1.0 / 3.0];
        let mut text = String::from(" position.x , mass,alive\n");
        for (i, v) in values.iter().enumerate() {
            text.push_str(&format!("{v}, {} ,{}\n", i, if i % 2 == 0 { "true" } else { "false" }));
        }
        std::fs::write(&path, text).expect("write");
        let t = read_table(&path, &[]).expect("read");
        assert_eq!(t.names, names(&["position.x", "mass", "alive"]));
        assert_eq!(t.rows, values.len());
        assert_eq!(t.columns[0], values.to_vec());
        assert_eq!(t.column("mass"), Some(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0][..]));
        assert_eq!(t.column("alive"), Some(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0][..]));
    }

    #[test]
    fn csv_header_only_has_zero_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.csv");
        std::fs::write(&path, "\u{feff}x,y\n").expect("write");
        let t = read_table(&path, &[]).expect("read");
        assert_eq!(t.names, names(&["x", "y"]));
        assert_eq!(t.rows, 0);
    }

    #[test]
    fn csv_bad_cell_names_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "x,mass\n1,2\n3,4\n5,heavy\n").expect("write");
        let err = read_table(&path, &[]).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("bad.csv:4:"), "{msg}");
        assert!(msg.contains("'mass'"), "{msg}");
        assert!(msg.contains("'heavy'"), "{msg}");
    }

    #[test]
    fn csv_ragged_row_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "x,y\n1,2\n3\n").expect("write");
        let msg = read_table(&path, &[]).expect_err("must fail").to_string();
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn missing_file_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.csv");
        let err = read_table(&path, &[]).expect_err("must fail");
        assert!(matches!(err, InputError::NotFound { .. }));
        let msg = err.to_string();
        assert!(msg.contains("nope.csv") && msg.contains("no such file"), "{msg}");
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spawn.txt");
        std::fs::write(&path, "x\n1\n").expect("write");
        assert!(matches!(read_table(&path, &[]), Err(InputError::Extension { .. })));
    }

    #[test]
    fn npy_plain_2d_f64() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spawn.npy");
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        write_npy(&path, "'<f8'", "(3, 2)", false, &f64_bytes(&data));
        let t = read_table(&path, &names(&["a", "b"])).expect("read");
        assert_eq!(t.names, names(&["a", "b"]));
        assert_eq!(t.rows, 3);
        assert_eq!(t.columns, vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]);

        let msg = read_table(&path, &names(&["a", "b", "c"])).expect_err("count").to_string();
        assert!(msg.contains("2 columns") && msg.contains("3 were expected"), "{msg}");
    }

    #[test]
    fn npy_plain_fortran_and_other_types() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.npy");
        // Column-major: column a = [1, 2, 3], column b = [-4, 5, -6].
        let data: Vec<u8> = [1i32, 2, 3, -4, 5, -6].iter().flat_map(|x| x.to_le_bytes()).collect();
        write_npy(&path, "'<i4'", "(3, 2)", true, &data);
        let t = read_table(&path, &names(&["a", "b"])).expect("read");
        assert_eq!(t.columns, vec![vec![1.0, 2.0, 3.0], vec![-4.0, 5.0, -6.0]]);

        let path = dir.path().join("be.npy");
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        write_npy(&path, "'>f4'", "(2, 1)", false, &data);
        let t = read_table(&path, &names(&["m"])).expect("read");
        assert_eq!(t.columns, vec![vec![1.5, -2.0]]);

        let path = dir.path().join("i8.npy");
        let data: Vec<u8> = [-7i64, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
        write_npy(&path, "'<i8'", "(2,)", false, &data);
        let t = read_table(&path, &names(&["k"])).expect("read");
        assert_eq!(t.columns, vec![vec![-7.0, 9.0]]);
    }

    #[test]
    fn npy_structured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.npy");
        let mut data = Vec::new();
        for (x, id, pos) in [(0.5f64, 3i32, [1.0f32, 2.0]), (-1.25, -4, [3.0, 4.0])] {
            data.extend_from_slice(&x.to_le_bytes());
            data.extend_from_slice(&id.to_le_bytes());
            data.extend_from_slice(&[0u8; 4]);
            for p in pos {
                data.extend_from_slice(&p.to_le_bytes());
            }
        }
        write_npy(
            &path,
            "[('mass', '<f8'), ('kind', '<i4'), ('', '|V4'), ('position', '<f4', (2,))]",
            "(2,)",
            false,
            &data,
        );
        let t = read_table(&path, &[]).expect("read");
        assert_eq!(t.names, names(&["mass", "kind", "position.x", "position.y"]));
        assert_eq!(t.rows, 2);
        assert_eq!(t.columns[0], vec![0.5, -1.25]);
        assert_eq!(t.columns[1], vec![3.0, -4.0]);
        assert_eq!(t.columns[2], vec![1.0, 3.0]);
        assert_eq!(t.columns[3], vec![2.0, 4.0]);
    }

    #[test]
    fn npy_truncated_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.npy");
        write_npy(&path, "'<f8'", "(3, 2)", false, &f64_bytes(&[1.0, 2.0]));
        let msg = read_table(&path, &names(&["a", "b"])).expect_err("short").to_string();
        assert!(msg.contains("truncated"), "{msg}");

        let path = dir.path().join("garbage.npy");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"hello").expect("write");
        let msg = read_table(&path, &names(&["a"])).expect_err("garbage").to_string();
        assert!(msg.contains("garbage.npy"), "{msg}");
    }
}
