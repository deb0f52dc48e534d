//! Requests and replies of the control socket.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Version,
    Outputs,
    Clients,
    Screenshot {
        #[serde(default)]
        output: Option<String>,
        path: PathBuf,
    },
    Stats,
    Planes,
    Reload,
    Quit,
    Play {
        path: PathBuf,
    },
    Pause,
    Resume,
    Next,
    Status,
    /// The displays (and the TVs, through CEC) on or off by hand, until the schedule's next
    /// switch.
    Display {
        on: bool,
    },
    /// The sound's volume in percent, and muting.
    Volume {
        #[serde(default)]
        percent: Option<u8>,
        #[serde(default)]
        muted: Option<bool>,
    },
}

/// `{"ok": true, "data": ...}` or `{"ok": false, "error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(data: Value) -> Self {
        Reply { ok: true, data: Some(data), error: None }
    }

    pub fn err(message: impl Into<String>) -> Self {
        Reply { ok: false, data: None, error: Some(message.into()) }
    }
}

/// Parse one request line; the error is what the client is told.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))?;
    // serde ignores unknown fields of unit variants; a typo like "ouput" must not pass silently.
    if let Some(object) = value.as_object() {
        let allowed: &[&str] = match object.get("cmd").and_then(Value::as_str) {
            Some("screenshot") => &["cmd", "output", "path"],
            Some("play") => &["cmd", "path"],
            Some("display") => &["cmd", "on"],
            Some("volume") => &["cmd", "percent", "muted"],
            _ => &["cmd"],
        };
        if let Some(key) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("malformed request: unknown field `{key}`"));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("malformed request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let req = Request::Screenshot { output: Some("HEADLESS-1".into()), path: "/tmp/x.png".into() };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(line, r#"{"cmd":"screenshot","output":"HEADLESS-1","path":"/tmp/x.png"}"#);
        assert_eq!(parse_request(&line).unwrap(), req);
        let display = Request::Display { on: false };
        let line = serde_json::to_string(&display).unwrap();
        assert_eq!(line, r#"{"cmd":"display","on":false}"#);
        assert_eq!(parse_request(&line).unwrap(), display);
        assert_eq!(parse_request(r#"{"cmd":"version"}"#).unwrap(), Request::Version);
        assert_eq!(
            parse_request(r#"{"cmd":"volume","percent":40}"#).unwrap(),
            Request::Volume { percent: Some(40), muted: None }
        );
        assert_eq!(
            parse_request(r#"{"cmd":"volume","muted":true}"#).unwrap(),
            Request::Volume { percent: None, muted: Some(true) }
        );
        assert!(parse_request(r#"{"cmd":"volume","percent":400}"#).is_err());
    }

    #[test]
    fn malformed_requests_are_errors() {
        for bad in ["", "{", "[]", r#"{"cmd":"explode"}"#, r#"{"cmd":"version","x":1}"#, r#"{"cmd":"screenshot"}"#] {
            let err = parse_request(bad).unwrap_err();
            assert!(err.starts_with("malformed request"), "{bad}: {err}");
        }
    }
}
