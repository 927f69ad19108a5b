//! Errors and warnings that name the file, the object and the field.

use thiserror::Error;

/// Input that cannot be used. Its one-line form is
/// `FILE: OBJECT: FIELD: MESSAGE` (object and field when known).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", render(.file, .object, .field, .message))]
pub struct LoadError {
    /// The file (or `-` for standard input).
    pub file: String,
    /// The object, e.g. `Service ns1/svc1` or `document 3`.
    pub object: Option<String>,
    /// The field path, e.g. `spec.ports[0].protocol`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Something kube-proxy itself would skip (and log); kpinspect skips it too
/// and reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// The object.
    pub object: Option<String>,
    /// The field path.
    pub field: Option<String>,
    /// What was skipped and why.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render(
            &self.file,
            &self.object,
            &self.field,
            &self.message,
        ))
    }
}

fn render(file: &str, object: &Option<String>, field: &Option<String>, message: &str) -> String {
    let mut s = String::from(file);
    for part in [object, field].into_iter().flatten() {
        s.push_str(": ");
        s.push_str(part);
    }
    s.push_str(": ");
    // Keep errors on one line.
    s.push_str(&message.replace('\n', " "));
    s
}

/// Where in the input we are, for building errors and warnings.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub object: String,
}

impl Ctx<'_> {
    pub fn error(&self, field: impl Into<String>, message: impl Into<String>) -> LoadError {
        let field = field.into();
        LoadError {
            file: self.file.to_string(),
            object: Some(self.object.clone()),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
        }
    }

    pub fn warning(&self, field: impl Into<String>, message: impl Into<String>) -> Warning {
        let field = field.into();
        Warning {
            file: self.file.to_string(),
            object: Some(self.object.clone()),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
        }
    }
}
