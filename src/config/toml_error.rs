//! Turns a TOML error into a line an installer can act on: the key path (`camera[1].url`), what
//! is wrong and the line number.
//!
//! `toml` reports only a byte span; the key path is not in its errors (serde drops it). It is
//! recovered here from the text around the span: the table header in force at that line (arrays
//! of tables counted, so the second `[[camera]]` is `camera[1]`) and the key assigned on it. The
//! line number always comes from the span; the key path is left out when the line does not show
//! one clearly, rather than guessed.

/// Where an error is: its 1-based line and, when it can be told, its key path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Location {
    pub line: usize,
    pub key: Option<String>,
    /// Whether the span starts at a table header (`[[camera]]`): a missing field is then a key
    /// of that table.
    pub at_header: bool,
}

/// The location of byte `offset` of `text`.
pub(crate) fn locate(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[..line_start].matches('\n').count() + 1;
    let table = table_path_before(&text[..line_start]);
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let trimmed = line_text.trim_start();
    if trimmed.starts_with('[') && offset - line_start <= line_text.len() - trimmed.len() {
        // The span starts at a header: the error is about that table as a whole.
        let mut tables = table.state;
        let key = tables.enter_header(trimmed);
        return Location {
            line,
            key,
            at_header: true,
        };
    }
    let key = assigned_key(line_text, offset - line_start).map(|k| match &table.path {
        Some(t) if !t.is_empty() => format!("{t}.{k}"),
        _ => k,
    });
    Location {
        line,
        key: if table.path.is_none() { None } else { key },
        at_header: false,
    }
}

/// The table path in force after `before`; `None` when it cannot be told (inside a multi-line
/// string, or a header that is not plain).
struct TableAt {
    path: Option<String>,
    state: Tables,
}

fn table_path_before(before: &str) -> TableAt {
    let mut tables = Tables::default();
    let mut path = Some(String::new());
    let mut in_multiline = false;
    for l in before.lines() {
        // A line holding an odd number of `"""` or `'''` opens or closes a multi-line string;
        // header-looking lines inside one are text.
        let quotes = l.matches("\"\"\"").count() + l.matches("'''").count();
        if !in_multiline && l.trim_start().starts_with('[') {
            path = tables.enter_header(l.trim_start());
        }
        if quotes % 2 == 1 {
            in_multiline = !in_multiline;
        }
    }
    TableAt {
        path: if in_multiline { None } else { path },
        state: tables,
    }
}

/// Headers seen so far: how many times each array of tables was opened.
#[derive(Default)]
struct Tables {
    arrays: Vec<(String, usize)>,
}

impl Tables {
    /// Takes a header line (`[a.b]` or `[[a]]`, comment allowed) and returns its key path with
    /// array indices (`camera[1].qr`).
    fn enter_header(&mut self, line: &str) -> Option<String> {
        let (array, rest) = match line.strip_prefix("[[") {
            Some(r) => (true, r.split_once("]]")?.0),
            None => (false, line.strip_prefix('[')?.split_once(']')?.0),
        };
        let segments = split_dotted(rest)?;
        let name = segments.join(".");
        if array {
            match self.arrays.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => self.arrays.push((name.clone(), 1)),
            }
        }
        // Every prefix that is an array of tables refers to its latest element.
        let mut path = String::new();
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 {
                path.push('.');
            }
            path.push_str(seg);
            let prefix = segments[..=i].join(".");
            if let Some((_, count)) = self.arrays.iter().find(|(n, _)| *n == prefix) {
                path.push_str(&format!("[{}]", count - 1));
            }
        }
        Some(path)
    }
}

/// The key assigned on `line`, with the inline table it is in when the error's column is inside
/// one (`mqtt = { password = 5 }` → `mqtt.password`).
fn assigned_key(line: &str, column: usize) -> Option<String> {
    let (first, _) = line.split_once('=')?;
    let first = split_dotted(first)?.join(".");
    let upto = &line[..column.min(line.len())];
    match upto.find('{') {
        // The last `key =` before the column inside the inline table.
        Some(brace) => {
            let inner = &upto[brace + 1..];
            let before_eq = &inner[..inner.rfind('=')?];
            let last = before_eq.rsplit([',', '{']).next()?;
            Some(format!("{first}.{}", split_dotted(last)?.join(".")))
        }
        None => Some(first),
    }
}

/// `a . "b"` → `["a", "b"]`; `None` when a segment is not a plain or quoted key.
fn split_dotted(s: &str) -> Option<Vec<String>> {
    s.split('.')
        .map(|seg| {
            let seg = seg.trim();
            let seg = seg
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| seg.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(seg);
            let plain = !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_'));
            plain.then(|| seg.to_owned())
        })
        .collect()
}

/// One line naming the key and the line: `camera[1].url: is missing (line 8)`.
pub(crate) fn describe(text: &str, e: &toml::de::Error) -> String {
    let msg = crate::redact::text(e.message().trim()).into_owned();
    let Some(span) = e.span() else {
        return msg;
    };
    let loc = locate(text, span.start);
    // A wrongly typed password is quoted by serde: never echo it. The line is checked too, for
    // when the key path cannot be told.
    let line_text = text.lines().nth(loc.line - 1).unwrap_or("");
    let secret = loc
        .key
        .as_deref()
        .is_some_and(|k| crate::redact::SECRET_KEYS.contains(&k))
        || line_text.to_ascii_lowercase().contains("password");
    let msg = if secret {
        crate::redact::secret_value_message(&msg, text.get(span.clone()).unwrap_or(""))
    } else {
        msg
    };
    let msg = msg.as_str();
    // serde says "missing field `url`"; with the table's path that is the key itself.
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|f| f.strip_suffix('`'))
    {
        return match (&loc.key, loc.at_header) {
            (Some(t), true) => format!("{t}.{field}: is missing (line {})", loc.line),
            // A top-level key: the span is the whole file, so no line helps.
            _ if span.start == 0 => format!("{field}: is missing"),
            _ => format!("{field}: is missing (line {})", loc.line),
        };
    }
    match loc.key {
        Some(key) => format!("{key}: {msg} (line {})", loc.line),
        None => format!("line {}: {msg}", loc.line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> Location {
        locate(text, text.find(needle).unwrap())
    }

    #[test]
    fn keys_are_found_through_tables_arrays_and_inline_tables() {
        let text = "site = 5\n[mqtt]\nhost = \"h\"\npassword = 12345\n[[camera]]\nid = \"a\"\n\
                    [camera.qr]\nscan_fps = \"x\"\n[[camera]] # second\nid = \"b\"\nfps = true\n\
                    [runtime]\nx = { a = 1, b = \"bad\" }\n";
        assert_eq!(at(text, "5").key.as_deref(), Some("site"));
        let pw = at(text, "12345");
        assert_eq!((pw.key.as_deref(), pw.line), (Some("mqtt.password"), 4));
        assert_eq!(
            at(text, "\"x\"").key.as_deref(),
            Some("camera[0].qr.scan_fps")
        );
        assert_eq!(at(text, "true").key.as_deref(), Some("camera[1].fps"));
        let header = at(text, "[[camera]] #");
        assert_eq!(
            (header.key.as_deref(), header.at_header, header.line),
            (Some("camera[1]"), true, 9)
        );
        assert_eq!(at(text, "\"bad\"").key.as_deref(), Some("runtime.x.b"));
    }

    #[test]
    fn a_header_inside_a_multiline_string_is_text() {
        let text = "note = \"\"\"\n[mqtt]\n\"\"\"\nsite = 5\n";
        assert_eq!(at(text, "5").key.as_deref(), Some("site"));
        let text = "note = \"\"\"\n[mqtt]\nx = 1\n";
        let inside = at(text, "1");
        assert_eq!((inside.key, inside.line), (None, 3));
    }
}
