//! JSON-lines and CSV files as a rewrap source and sink, one record at a
//! time (memory stays constant whatever the file size).
//!
//! JSON lines: each line is an object; the field's string value is the
//! ciphertext. A rewrapped line is the input line with only that value's
//! bytes replaced, so key order, spacing and number formatting survive;
//! other lines are copied byte for byte. CSV: a header row names the column;
//! records are written back through the csv writer (quoting may be
//! normalized, values are not changed).
//!
//! Positions are byte offsets: where the next record of the input starts and
//! how many bytes of output the records before it produced, which is what a
//! checkpoint records and what [`RecordReader::open`] and
//! [`RecordWriter::create`] resume from.

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{FileFormat, RewrapError};

/// What a record holds in the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// A blank line (JSON lines): copied, not counted.
    Blank,
    /// The record cannot be read as one (not a JSON object, no such field, a
    /// non-string value...).
    Bad(&'static str),
    /// The field's text; `None` for null or absent.
    Text(Option<String>),
}

/// One record as read, kept whole so that it can be written back.
pub(super) struct Record {
    /// 1-based number of the record (line for JSON lines, data record for CSV).
    pub number: u64,
    pub value: Value,
    raw: Raw,
}

enum Raw {
    /// The line's bytes with its newline, and the byte range of the field's
    /// JSON value in it.
    Line {
        bytes: Vec<u8>,
        span: Option<(usize, usize)>,
    },
    /// The CSV record and the index of the field in it.
    Csv {
        fields: csv::ByteRecord,
        index: usize,
    },
}

impl Record {
    /// Where the record is, for the report.
    pub(super) fn location(&self, format: FileFormat) -> String {
        match format {
            FileFormat::Jsonl => format!("line {}", self.number),
            FileFormat::Csv => format!("record {}", self.number),
        }
    }
}

/// The format of `path`: `explicit`, else `.csv` means CSV and anything else
/// JSON lines.
pub(super) fn format_of(path: &Path, explicit: Option<FileFormat>) -> FileFormat {
    explicit.unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
        Some(ext) if ext.eq_ignore_ascii_case("csv") => FileFormat::Csv,
        _ => FileFormat::Jsonl,
    })
}

/// Reads records one at a time.
pub(super) struct RecordReader {
    path: PathBuf,
    inner: Inner,
    records: u64,
    len: u64,
}

enum Inner {
    Jsonl {
        reader: BufReader<File>,
        offset: u64,
        field: String,
    },
    Csv {
        reader: csv::Reader<File>,
        index: usize,
        header: csv::ByteRecord,
    },
}

impl RecordReader {
    /// Opens `path`, at `resume` (input offset, records before it) if given.
    pub(super) fn open(
        path: &Path,
        format: FileFormat,
        field: &str,
        resume: Option<(u64, u64)>,
    ) -> Result<Self, RewrapError> {
        let io = |source| RewrapError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let (offset, records) = resume.unwrap_or((0, 0));
        if offset > len {
            return Err(RewrapError::BadCheckpoint {
                path: path.to_owned(),
                why: "it points past the end of the input (was the input replaced?)",
            });
        }
        let inner = match format {
            FileFormat::Jsonl => {
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                Inner::Jsonl {
                    reader: BufReader::with_capacity(1 << 16, file),
                    offset,
                    field: field.to_owned(),
                }
            }
            FileFormat::Csv => {
                let csv_error = |source| RewrapError::Csv {
                    path: path.to_owned(),
                    source,
                };
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .from_reader(file);
                let header = reader.byte_headers().map_err(csv_error)?.clone();
                let index = header
                    .iter()
                    .position(|name| name == field.as_bytes())
                    .ok_or_else(|| {
                        RewrapError::Usage(format!(
                            "{}: the header has no column {field:?}",
                            path.display()
                        ))
                    })?;
                if resume.is_some() {
                    let mut position = csv::Position::new();
                    position.set_byte(offset).set_record(records + 1);
                    reader.seek(position).map_err(csv_error)?;
                }
                Inner::Csv {
                    reader,
                    index,
                    header,
                }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            inner,
            records,
            len,
        })
    }

    /// The input's size in bytes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Records read so far (including those before the resume point).
    pub(super) fn records(&self) -> u64 {
        self.records
    }

    /// The CSV header, to write at the top of a new output.
    pub(super) fn header(&self) -> Option<&csv::ByteRecord> {
        match &self.inner {
            Inner::Jsonl { .. } => None,
            Inner::Csv { header, .. } => Some(header),
        }
    }

    /// Where the next record starts.
    pub(super) fn offset(&self) -> u64 {
        match &self.inner {
            Inner::Jsonl { offset, .. } => *offset,
            Inner::Csv { reader, .. } => reader.position().byte(),
        }
    }

    /// The next record, or `None` at the end of the input.
    pub(super) fn next(&mut self) -> Result<Option<Record>, RewrapError> {
        let number = self.records + 1;
        let record = match &mut self.inner {
            Inner::Jsonl {
                reader,
                offset,
                field,
            } => {
                let mut bytes = Vec::with_capacity(256);
                let read =
                    reader
                        .read_until(b'\n', &mut bytes)
                        .map_err(|source| RewrapError::Io {
                            path: self.path.clone(),
                            source,
                        })?;
                if read == 0 {
                    return Ok(None);
                }
                *offset += read as u64;
                let (value, span) = parse_line(&bytes, field);
                Record {
                    number,
                    value,
                    raw: Raw::Line { bytes, span },
                }
            }
            Inner::Csv { reader, index, .. } => {
                let mut record = csv::ByteRecord::new();
                let more =
                    reader
                        .read_byte_record(&mut record)
                        .map_err(|source| RewrapError::Csv {
                            path: self.path.clone(),
                            source,
                        })?;
                if !more {
                    return Ok(None);
                }
                let value = match record.get(*index) {
                    None => Value::Bad("the record has fewer fields than the header"),
                    Some(b"") => Value::Text(None),
                    Some(bytes) => match std::str::from_utf8(bytes) {
                        Ok(text) => Value::Text(Some(text.to_owned())),
                        Err(_) => Value::Bad("the field is not UTF-8"),
                    },
                };
                Record {
                    number,
                    value,
                    raw: Raw::Csv {
                        fields: record,
                        index: *index,
                    },
                }
            }
        };
        self.records += 1;
        Ok(Some(record))
    }
}

/// Finds `field` in a JSON line: its value and the byte range of its JSON
/// text.
fn parse_line(line: &[u8], field: &str) -> (Value, Option<(usize, usize)>) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return (Value::Blank, None);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let found = match FindField(field).deserialize(&mut deserializer) {
        Ok(found) => found,
        Err(_) => return (Value::Bad("the line is not a JSON object"), None),
    };
    if deserializer.end().is_err() {
        return (Value::Bad("the line holds more than one JSON value"), None);
    }
    let raw = match found {
        Found::Absent => return (Value::Text(None), None),
        Found::Twice => return (Value::Bad("the field appears twice"), None),
        Found::Once(raw) => raw,
    };
    // The RawValue borrows from `line`: its address gives its position.
    let start = raw.get().as_ptr() as usize - line.as_ptr() as usize;
    let span = Some((start, start + raw.get().len()));
    match serde_json::from_str::<Option<String>>(raw.get()) {
        Ok(text) => (Value::Text(text), span),
        Err(_) => (Value::Bad("the field is not a string"), None),
    }
}

enum Found<'de> {
    Absent,
    Once(&'de RawValue),
    Twice,
}

/// Deserializes a JSON object, keeping only the raw value of one field.
struct FindField<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FindField<'_> {
    type Value = Found<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindField<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found::Absent;
        while let Some(matches) = map.next_key_seed(KeyIs(self.0))? {
            if matches {
                let raw: &'de RawValue = map.next_value()?;
                found = match found {
                    Found::Absent => Found::Once(raw),
                    Found::Once(_) | Found::Twice => Found::Twice,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Deserializes a key into "is it the field?", without allocating.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Writes records in input order.
pub(super) struct RecordWriter {
    path: PathBuf,
    inner: Output,
}

enum Output {
    Jsonl(BufWriter<File>),
    Csv(Box<csv::Writer<File>>),
}

impl RecordWriter {
    /// Creates `path` (with `header` for CSV), or with `resume_offset`
    /// reopens it cut back to that many bytes, dropping whatever a killed
    /// run wrote after its last checkpoint.
    pub(super) fn create(
        path: &Path,
        format: FileFormat,
        header: Option<&csv::ByteRecord>,
        resume_offset: Option<u64>,
    ) -> Result<Self, RewrapError> {
        let io = |source| RewrapError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match resume_offset {
            None => File::create(path).map_err(io)?,
            Some(offset) => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io)?;
                if file.metadata().map_err(io)?.len() < offset {
                    return Err(RewrapError::BadCheckpoint {
                        path: path.to_owned(),
                        why: "the output is shorter than the checkpoint says",
                    });
                }
                file.set_len(offset).map_err(io)?;
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                file
            }
        };
        let inner = match format {
            FileFormat::Jsonl => Output::Jsonl(BufWriter::with_capacity(1 << 16, file)),
            FileFormat::Csv => {
                let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(file);
                if let (Some(header), None) = (header, resume_offset) {
                    writer
                        .write_byte_record(header)
                        .map_err(|source| RewrapError::Csv {
                            path: path.to_owned(),
                            source,
                        })?;
                }
                Output::Csv(Box::new(writer))
            }
        };
        Ok(Self {
            path: path.to_owned(),
            inner,
        })
    }

    /// Writes `record`, with its field replaced by `new` if given.
    pub(super) fn write(&mut self, record: &Record, new: Option<&str>) -> Result<(), RewrapError> {
        match (&mut self.inner, &record.raw) {
            (Output::Jsonl(out), Raw::Line { bytes, span }) => {
                let io = |source| RewrapError::Io {
                    path: self.path.clone(),
                    source,
                };
                match (new, span) {
                    (Some(new), Some((start, end))) => {
                        let quoted =
                            serde_json::to_string(new).map_err(|e| io(std::io::Error::other(e)))?;
                        out.write_all(&bytes[..*start]).map_err(io)?;
                        out.write_all(quoted.as_bytes()).map_err(io)?;
                        out.write_all(&bytes[*end..]).map_err(io)
                    }
                    _ => out.write_all(bytes).map_err(io),
                }
            }
            (Output::Csv(out), Raw::Csv { fields, index }) => {
                let csv_error = |source| RewrapError::Csv {
                    path: self.path.clone(),
                    source,
                };
                match new {
                    Some(new) => {
                        let mut replaced =
                            csv::ByteRecord::with_capacity(fields.as_slice().len(), fields.len());
                        for (i, field) in fields.iter().enumerate() {
                            replaced.push_field(if i == *index { new.as_bytes() } else { field });
                        }
                        out.write_byte_record(&replaced).map_err(csv_error)
                    }
                    None => out.write_byte_record(fields).map_err(csv_error),
                }
            }
            _ => Err(RewrapError::Protocol(
                "a record of one format was written to the other",
            )),
        }
    }

    /// Flushes and syncs; returns the output's length, for the checkpoint.
    pub(super) fn sync(&mut self) -> Result<u64, RewrapError> {
        let io = |source| RewrapError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match &mut self.inner {
            Output::Jsonl(out) => {
                out.flush().map_err(io)?;
                out.get_ref()
            }
            Output::Csv(out) => {
                out.flush().map_err(io)?;
                out.get_ref()
            }
        };
        file.sync_data().map_err(io)?;
        let mut handle: &File = file;
        handle.stream_position().map_err(io)
    }
}
