//! What a command prints: a table (or key/value lines) for people, one JSON document for
//! scripts (`--json`). Commands build the value; this module renders it.

use std::io::Write;

use serde_json::Value;

use crate::error::CliError;

/// How the results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// A table: headers and rows of text, columns padded to their widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: an upper-case header line, then one line per row (no trailing
    /// spaces).
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(self.headers.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                out.push_str(cell);
                if i + 1 < columns {
                    out.push_str(&" ".repeat(width - cell.chars().count() + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
        let mut text = line(&headers);
        for row in &self.rows {
            text.push('\n');
            text.push_str(&line(row));
        }
        text.push('\n');
        text
    }
}

/// `key: value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// A JSON value as a table cell: strings bare, null as `-`, others as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A byte count for people (`3.0 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// Prints `json` (with `--json`) or `human` (otherwise) to stdout.
pub fn emit(format: Format, json: &Value, human: impl FnOnce() -> String) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(json).unwrap_or_default()
        )?,
        Format::Human => write!(out, "{}", human())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let mut table = Table::new(&["task_id", "status", "bytes"]);
        table.row(vec!["demo-1".into(), "stored".into(), "3.0 MiB".into()]);
        table.row(vec!["a-much-longer-id".into(), "failed".into(), "-".into()]);
        assert_eq!(
            table.render(),
            "TASK_ID           STATUS  BYTES\n\
             demo-1            stored  3.0 MiB\n\
             a-much-longer-id  failed  -\n"
        );
        assert_eq!(Table::new(&["a", "b"]).render(), "A  B\n");
    }

    #[test]
    fn cells_fields_and_sizes_read_well() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("x")), "x");
        assert_eq!(cell(&json!(451)), "451");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(
            fields(&[
                ("task_id", "t-1".into()),
                ("status", "stored".into()),
                ("empty", String::new())
            ]),
            "task_id  t-1\nstatus   stored\n"
        );
    }
}
