//! Keeps secrets out of what gatewatch prints: logs, `check`'s resolved configuration, config
//! errors and command replies all pass their text through [`text`] (or [`MASK`] a value that is
//! a secret by name), so a password never reaches the journal or the hub.
//!
//! Secrets come in through the config in two forms: `mqtt.password`, and camera URLs that carry
//! credentials (`rtsp://user:pass@host/…`, or a `?password=` style query parameter, as some
//! cameras' HTTP URLs do). The user name is kept: it helps an installer see which account is used.

use regex::Regex;
use std::borrow::Cow;
use std::sync::LazyLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// `scheme://user:password@`: the password runs to the last `@` before the end of the URL (a
/// space or quote), as passwords may hold `@`, `/` or `#` unencoded (camera web UIs accept them);
/// hiding a few characters too many is better than one too few.
static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:"'`]*):[^\s"'`]*@"#).expect("regex")
});

/// Query parameters that carry secrets by their name (`password=`, `pwd=`, `token=`, `apikey=`…).
static SECRET_PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)([?&;][a-z0-9_.-]*(?:pass|pwd|token|secret|auth|key|sig)[a-z0-9_.-]*=)[^&#\s"'`]*"#,
    )
    .expect("regex")
});

/// `s` with the credentials of every URL in it replaced by [`MASK`]; borrowed when there are none.
pub fn text(s: &str) -> Cow<'_, str> {
    let s = USERINFO.replace_all(s, format!("${{1}}:{MASK}@"));
    match SECRET_PARAM.replace_all(&s, format!("${{1}}{MASK}")) {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => Cow::Owned(o),
    }
}

/// Config keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &["mqtt.password"];

/// Backquoted values in serde's messages (`invalid type: integer `12345`, expected a string`).
static QUOTED_VALUE: LazyLock<Regex> = LazyLock::new(|| Regex::new("`[^`]*`").expect("regex"));

/// A message about the value of a secret key with that value masked: serde quotes the value it
/// could not use (`invalid type: integer `12345``), `value` is the value as written in the file.
pub fn secret_value_message(message: &str, value: &str) -> String {
    let masked = QUOTED_VALUE.replace_all(message, format!("`{MASK}`"));
    let value = value.trim();
    if value.is_empty() {
        masked.into_owned()
    } else {
        masked.replace(value, MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_masked_and_the_rest_kept() {
        assert_eq!(
            text("rtsp://admin:Gate#42@10.0.0.5:554/Streaming/Channels/101"),
            "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"
        );
        // A password holding '@' and '/' is masked whole.
        assert_eq!(
            text("cannot open rtsp://u:p@ss/w@rd@cam/1 (unreachable)"),
            "cannot open rtsp://u:***@cam/1 (unreachable)"
        );
        assert_eq!(
            text("http://cam/snap.jpg?user=admin&pwd=hunter2&size=2"),
            "http://cam/snap.jpg?user=admin&pwd=***&size=2"
        );
        assert_eq!(
            text("url = \"https://x/y?access_token=abc\""),
            "url = \"https://x/y?access_token=***\""
        );
        for plain in [
            "rtsp://10.0.0.5:554/stream1",
            "rtsp://viewer@cam/1",
            "folder:/srv/replay",
            "no url here: a:b@c",
        ] {
            assert!(matches!(text(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn a_wrongly_typed_secret_is_not_echoed() {
        assert_eq!(
            secret_value_message("invalid type: integer `12345`, expected a string", "12345"),
            "invalid type: integer `***`, expected a string"
        );
        assert_eq!(
            secret_value_message(
                "invalid type: floating point `1000`, expected a string",
                "1e3"
            ),
            "invalid type: floating point `***`, expected a string"
        );
    }
}
