//! Result sets as the console sends them: text format, PgBouncer's column types.
//!
//! Tools index console results by column name and some check the type OIDs, so every table
//! declares its columns once ([`Column`]) with the type PgBouncer 1.25 gives them, and rows
//! are written cell by cell in that order.

use bytes::{BufMut, BytesMut};

/// The column types PgBouncer's console uses, as PostgreSQL type OIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text` (25): names, addresses, times (PgBouncer formats times as text too).
    Text,
    /// `int4` (23): counts and sizes.
    Int4,
    /// `int8` (20).
    Int8,
    /// `numeric` (1700): the 64-bit counters of SHOW STATS*.
    Numeric,
}

impl ColumnType {
    /// The type OID sent in RowDescription.
    pub fn oid(self) -> u32 {
        match self {
            ColumnType::Text => 25,
            ColumnType::Int4 => 23,
            ColumnType::Int8 => 20,
            ColumnType::Numeric => 1700,
        }
    }

    /// `typlen` as PostgreSQL reports it: -1 for variable-length types.
    fn size(self) -> i16 {
        match self {
            ColumnType::Int4 => 4,
            ColumnType::Int8 => 8,
            ColumnType::Text | ColumnType::Numeric => -1,
        }
    }
}

/// One column of a console table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// Shorthand for table declarations.
pub const fn text(name: &'static str) -> Column {
    Column {
        name,
        ty: ColumnType::Text,
    }
}

/// Shorthand for table declarations.
pub const fn int4(name: &'static str) -> Column {
    Column {
        name,
        ty: ColumnType::Int4,
    }
}

/// Shorthand for table declarations.
pub const fn numeric(name: &'static str) -> Column {
    Column {
        name,
        ty: ColumnType::Numeric,
    }
}

/// A cell value; `Null` is SQL NULL (PgBouncer sends NULL for unset texts such as force_user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Null,
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_string())
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::Text(text)
    }
}

impl From<Option<&str>> for Cell {
    fn from(text: Option<&str>) -> Self {
        text.map_or(Cell::Null, Cell::from)
    }
}

macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(n: $t) -> Self {
                Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_cell!(i32, i64, u16, u32, u64, usize);

/// Writes a whole result set: RowDescription, the rows, CommandComplete `SHOW` (PgBouncer's
/// tag for every SHOW). Rows shorter or longer than the header are a bug in the caller; they
/// are padded with NULL or cut so the client never sees a malformed DataRow.
pub fn write_table(out: &mut BytesMut, columns: &[Column], rows: &[Vec<Cell>]) {
    row_description(out, columns);
    for row in rows {
        data_row(out, columns.len(), row);
    }
    command_complete(out, "SHOW");
}

/// RowDescription: every column text-format, no table, PgBouncer's type and size.
pub fn row_description(out: &mut BytesMut, columns: &[Column]) {
    let start = begin(out, b'T');
    out.put_i16(columns.len() as i16);
    for column in columns {
        put_cstr(out, column.name);
        out.put_u32(0); // table OID
        out.put_i16(0); // attribute number
        out.put_u32(column.ty.oid());
        out.put_i16(column.ty.size());
        out.put_i32(-1); // type modifier
        out.put_i16(0); // text format
    }
    finish(out, start);
}

/// DataRow of `width` cells from `row`.
pub fn data_row(out: &mut BytesMut, width: usize, row: &[Cell]) {
    let start = begin(out, b'D');
    out.put_i16(width as i16);
    for i in 0..width {
        match row.get(i).unwrap_or(&Cell::Null) {
            Cell::Text(text) => put_value(out, text.as_bytes()),
            Cell::Int(n) => put_value(out, n.to_string().as_bytes()),
            Cell::Null => out.put_i32(-1),
        }
    }
    finish(out, start);
}

/// CommandComplete with `tag`.
pub fn command_complete(out: &mut BytesMut, tag: &str) {
    let start = begin(out, b'C');
    put_cstr(out, tag);
    finish(out, start);
}

/// EmptyQueryResponse, for a Query with nothing but whitespace and semicolons.
pub fn empty_query(out: &mut BytesMut) {
    let start = begin(out, b'I');
    finish(out, start);
}

/// NoticeResponse with severity NOTICE, SQLSTATE 00000, a message and a detail, the way
/// PgBouncer answers SHOW HELP.
pub fn notice(out: &mut BytesMut, message: &str, detail: &str) {
    let start = begin(out, b'N');
    for (field, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', "00000"),
        (b'M', message),
        (b'D', detail),
    ] {
        out.put_u8(field);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish(out, start);
}

fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let start = out.len();
    out.put_i32(0);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, text: &str) {
    // A NUL inside would end the string early and shift every later field.
    out.extend(text.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

fn put_value(out: &mut BytesMut, bytes: &[u8]) {
    out.put_i32(bytes.len() as i32);
    out.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_description_rows_and_show_tag() {
        let mut out = BytesMut::new();
        let columns = [text("list"), int4("items")];
        write_table(&mut out, &columns, &[vec!["pools".into(), 3.into()]]);
        assert_eq!(out[0], b'T');
        let t_len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        let description = &out[5..1 + t_len];
        assert_eq!(&description[..2], &2i16.to_be_bytes());
        assert!(description.windows(5).any(|w| w == b"list\0"));
        let row = &out[1 + t_len..];
        assert_eq!(row[0], b'D');
        let d_len = i32::from_be_bytes([row[1], row[2], row[3], row[4]]) as usize;
        let cells = &row[5..1 + d_len];
        assert_eq!(cells, b"\0\x02\0\0\0\x05pools\0\0\0\x013");
        assert_eq!(&row[1 + d_len..], b"C\0\0\0\x09SHOW\0");
    }

    #[test]
    fn short_rows_are_padded_with_null() {
        let mut out = BytesMut::new();
        data_row(&mut out, 2, &[Cell::Int(7)]);
        assert_eq!(&out[..], b"D\0\0\0\x0f\0\x02\0\0\0\x017\xff\xff\xff\xff");
    }

    #[test]
    fn type_oids_are_postgres_ones() {
        let oids = [
            ColumnType::Text,
            ColumnType::Int4,
            ColumnType::Int8,
            ColumnType::Numeric,
        ]
        .map(ColumnType::oid);
        assert_eq!(oids, [25, 23, 20, 1700]);
    }
}
