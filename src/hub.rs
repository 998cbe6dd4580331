//! Commands from the hub: `<prefix>/cmd/<name>` with a JSON object carrying an `id`; the reply goes
//! to `<prefix>/cmd/<name>/reply` as `{"id", "ok", "error"?, "result"?}`.
//!
//! Every command is one entry of a [`Commands`] table (name → handler); the components that
//! answer commands add theirs (`YardService::add_commands`), and `run` assembles the table.
//!
//! [`Commands::dispatch`] turns any payload into a reply and never panics: oversized payloads, malformed
//! JSON, a missing id, unknown commands and handler failures (panics included) all become error
//! replies, and the process keeps serving.

use serde_json::{json, Map, Value};

/// Payloads larger than this are refused unread.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// Runs one command: the request object in, the reply's `result` (or `error`) out.
type Handler = Box<dyn Fn(&Map<String, Value>) -> Result<Value, String> + Send + Sync>;

/// The commands a box answers, by name, in the order they were added (the order an unknown
/// command's error lists them in). A handful of entries: a list is the simplest table.
#[derive(Default)]
pub struct Commands {
    table: Vec<(&'static str, Handler)>,
}

impl Commands {
    /// Adds a command. Names are unique: a second handler for a name is a programming error.
    pub fn add(
        &mut self,
        name: &'static str,
        handler: impl Fn(&Map<String, Value>) -> Result<Value, String> + Send + Sync + 'static,
    ) -> &mut Self {
        assert!(self.get(name).is_none(), "hub command {name} added twice");
        self.table.push((name, Box::new(handler)));
        self
    }

    /// The known command names.
    pub fn names(&self) -> Vec<&'static str> {
        self.table.iter().map(|(name, _)| *name).collect()
    }

    fn get(&self, name: &str) -> Option<&Handler> {
        self.table.iter().find(|(n, _)| *n == name).map(|(_, h)| h)
    }
}

/// A reply and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Below the prefix: `cmd/<name>/reply`.
    pub topic_suffix: String,
    pub body: Value,
}

impl Commands {
    /// Handles one command message.
    pub fn dispatch(&self, name: &str, payload: &[u8]) -> Reply {
        let topic_suffix = format!("cmd/{name}/reply");
        let fail = |id: Value, error: String| {
            tracing::warn!(command = %name, id = %id, error = %error, "command refused");
            Reply {
                topic_suffix: topic_suffix.clone(),
                body: json!({"id": id, "ok": false, "error": error}),
            }
        };
        if payload.len() > MAX_COMMAND_BYTES {
            return fail(
                Value::Null,
                format!(
                    "payload of {} bytes exceeds the limit of {MAX_COMMAND_BYTES}",
                    payload.len()
                ),
            );
        }
        let request: Map<String, Value> = match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return fail(
                    Value::Null,
                    format!("payload must be a JSON object, got {}", kind(&other)),
                )
            }
            Err(e) => return fail(Value::Null, format!("malformed JSON: {e}")),
        };
        let id = match request.get("id") {
            Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
            Some(other) => {
                return fail(
                    Value::Null,
                    format!("id must be a string or a number, got {}", kind(other)),
                )
            }
            None => return fail(Value::Null, "missing id".into()),
        };
        let Some(handler) = self.get(name) else {
            return fail(
                id,
                format!(
                    "unknown command {name:?}; known: {}",
                    self.names().join(", ")
                ),
            );
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&request)));
        match outcome {
            Ok(Ok(result)) => {
                tracing::info!(command = %name, id = %id, "command done");
                Reply {
                    topic_suffix,
                    body: json!({"id": id, "ok": true, "result": result}),
                }
            }
            Ok(Err(e)) => fail(id, e),
            Err(_) => fail(
                id,
                "internal error while running the command (logged)".into(),
            ),
        }
    }
}

/// An optional field of a request: absent or `null` is `None`; a value `get` cannot read is an
/// error naming the field. (Read as absent, a wrongly typed `"yard": 5` once applied a `yard_set`
/// to the only yard.)
pub fn optional<'a, T>(
    request: &'a Map<String, Value>,
    field: &str,
    expected: &str,
    get: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<Option<T>, String> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => get(v).map(Some).ok_or_else(|| {
            let got = match v {
                Value::Number(n) => n.to_string(),
                other => kind(other).to_owned(),
            };
            format!("{field} must be {expected}, got {got}")
        }),
    }
}

/// An optional string field; see [`optional`].
pub fn optional_str<'a>(
    request: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    optional(request, field, "a string", Value::as_str)
}

/// An optional whole-number field (0 or more); see [`optional`].
pub fn optional_u64(request: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    optional(request, field, "a whole number (0 or more)", Value::as_u64)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn echo() -> Commands {
        let mut c = Commands::default();
        c.add("ping", |request| {
            Ok(json!({"echo": request.get("x").cloned()}))
        })
        .add("boom", |_| panic!("handler bug"))
        .add("fail", |_| Err("no such camera".into()));
        c
    }

    #[test]
    #[should_panic(expected = "added twice")]
    fn a_name_is_added_once() {
        echo().add("ping", |_| Ok(Value::Null));
    }

    #[test]
    fn good_and_bad_commands_get_the_right_replies() {
        let r = echo().dispatch("ping", br#"{"id":"a1","x":5}"#);
        assert_eq!(r.topic_suffix, "cmd/ping/reply");
        assert_eq!(
            r.body,
            json!({"id": "a1", "ok": true, "result": {"echo": 5}})
        );
        let r = echo().dispatch("nope", br#"{"id":7}"#);
        assert_eq!(
            (r.body["id"].clone(), r.body["ok"].clone()),
            (json!(7), json!(false))
        );
        assert!(r.body["error"].as_str().unwrap().contains("known: ping"));
        assert_eq!(
            echo().dispatch("fail", br#"{"id":1}"#).body["error"],
            "no such camera"
        );
        assert_eq!(
            echo().dispatch("boom", br#"{"id":1}"#).body["ok"],
            false,
            "a panic is an error reply"
        );
        assert!(echo().dispatch("ping", b"{not json").body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"));
        assert_eq!(
            echo().dispatch("ping", br#"{"x":1}"#).body["error"],
            "missing id"
        );
        assert!(echo().dispatch("ping", b"[1]").body["error"]
            .as_str()
            .unwrap()
            .contains("an array"));
        let big = format!(r#"{{"id":1,"x":"{}"}}"#, "a".repeat(MAX_COMMAND_BYTES));
        assert!(echo().dispatch("ping", big.as_bytes()).body["error"]
            .as_str()
            .unwrap()
            .contains("exceeds"));
    }

    #[test]
    fn optional_fields_of_the_wrong_type_are_errors_naming_the_field() {
        let req = |v: Value| v.as_object().unwrap().clone();
        let r = req(json!({"yard": 5, "limit": "10", "offset": -1, "camera": "a", "n": null}));
        assert_eq!(
            optional_str(&r, "yard"),
            Err("yard must be a string, got 5".into())
        );
        assert_eq!(
            optional_u64(&r, "limit"),
            Err("limit must be a whole number (0 or more), got a string".into())
        );
        assert!(optional_u64(&r, "offset").unwrap_err().contains("got -1"));
        assert_eq!(optional_str(&r, "camera"), Ok(Some("a")));
        assert_eq!(optional_str(&r, "n"), Ok(None), "null is absent");
        assert_eq!(optional_u64(&r, "missing"), Ok(None));
    }

    proptest! {
        #[test]
        fn any_bytes_get_a_reply_and_never_panic(name in "[a-z_]{1,12}", payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let r = echo().dispatch(&name, &payload);
            prop_assert_eq!(r.body["ok"].is_boolean(), true);
            prop_assert_eq!(r.topic_suffix, format!("cmd/{name}/reply"));
        }

        #[test]
        fn every_command_with_an_id_gets_that_id_back(
            name in prop_oneof!["ping", "boom", "fail", "[a-z]{1,8}"],
            id in prop_oneof![any::<i64>().prop_map(|i| json!(i)), "\\PC{0,20}".prop_map(|s| json!(s))],
            extra in proptest::collection::btree_map("[a-z]{1,5}", any::<i32>(), 0..4),
        ) {
            let mut obj = serde_json::Map::new();
            for (k, v) in extra { obj.insert(k, json!(v)); }
            obj.insert("id".into(), id.clone());
            let r = echo().dispatch(&name, &serde_json::to_vec(&obj).unwrap());
            prop_assert_eq!(&r.body["id"], &id);
        }
    }
}
