//! `kpinspect-gen N M [--format json|yaml] [--change S]`: prints a cluster
//! of N Services × M endpoints as kubectl prints it (see the library).

use std::io::Write as _;
use std::process::ExitCode;

use kpinspect_gen::{Format, Spec, generate};

const USAGE: &str =
    "usage: kpinspect-gen SERVICES ENDPOINTS [--format json|yaml] [--change SERVICE]";

fn parse(args: &[String]) -> Result<(Spec, Format), String> {
    let mut numbers = Vec::new();
    let mut format = Format::Json;
    let mut changed = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--format" => {
                let v = it.next().ok_or("--format needs a value")?;
                format = v.parse().map_err(|e| format!("{e}"))?;
            }
            "--change" => {
                let v = it.next().ok_or("--change needs a service number")?;
                changed = Some(v.parse().map_err(|e| format!("--change {v:?}: {e}"))?);
            }
            n => numbers.push(n.parse::<u32>().map_err(|e| format!("{n:?}: {e}"))?),
        }
    }
    let [services, endpoints] = numbers[..] else {
        return Err(USAGE.to_string());
    };
    let spec = Spec {
        services,
        endpoints,
        changed,
    };
    spec.check().map_err(|e| e.to_string())?;
    Ok((spec, format))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (spec, format) = match parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("kpinspect-gen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = generate(&spec, format);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kpinspect-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
