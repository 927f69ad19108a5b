//! Graphviz's `dot`, run by argv (no shell) to turn DOT text into SVG.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Why `dot` gave no SVG.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphvizError {
    /// No `dot` program on `PATH`.
    #[error("graphviz's dot is not installed (install graphviz, or print DOT with -o dot)")]
    NotInstalled,
    /// `dot` could not be started or talked to.
    #[error("dot: {0}")]
    Io(#[source] std::io::Error),
    /// `dot` refused the graph.
    #[error("dot -Tsvg failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// Renders `dot_text` with `dot -Tsvg` (the `dot` found on `PATH`) and
/// returns the SVG.
pub fn render_svg(dot_text: &str) -> Result<String, GraphvizError> {
    render_svg_with("dot", dot_text)
}

/// [`render_svg`] with the program named `program` (a path or a name
/// looked up on `PATH`).
pub fn render_svg_with(program: &str, dot_text: &str) -> Result<String, GraphvizError> {
    let mut child = Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GraphvizError::NotInstalled,
            _ => GraphvizError::Io(e),
        })?;
    // Written from a thread: dot may start writing before it has read all.
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| GraphvizError::Io(std::io::Error::other("no stdin pipe to dot")))?;
    let input = dot_text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(GraphvizError::Io)?;
    let written = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
    if !out.status.success() {
        return Err(GraphvizError::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    written.map_err(GraphvizError::Io)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_graphviz_is_not_installed() {
        let e = render_svg_with("/nonexistent/kpinspect-test-dot", "digraph {}").unwrap_err();
        assert!(matches!(e, GraphvizError::NotInstalled), "{e:?}");
        assert!(e.to_string().starts_with("graphviz's dot is not installed"));
    }

    #[test]
    fn dot_renders_svg_when_installed() {
        match render_svg("digraph g { a -> \"endpoint 10.0.0.1:80\" }") {
            Ok(svg) => {
                assert!(svg.contains("<svg"), "{svg}");
                assert!(svg.contains("endpoint 10.0.0.1:80"), "{svg}");
            }
            Err(GraphvizError::NotInstalled) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "graphviz is not installed under CI"
                );
                eprintln!("skipped: graphviz's dot is not installed");
            }
            Err(e) => panic!("{e}"),
        }
        let bad = render_svg("digraph {");
        if let Err(e) = bad {
            assert!(
                matches!(
                    e,
                    GraphvizError::Failed { .. } | GraphvizError::NotInstalled
                ),
                "{e:?}"
            );
        } else {
            panic!("a broken graph rendered");
        }
    }
}
