//! Settings nothing reads. A misspelt name (`GATEHOUSE_EDGE_SYNC_URL` for `…_URLS`, or
//! `GATEHOUSE_LOCKOUT_THRESHOLD` with one `_` where a nested key takes two) left its setting at
//! the default without a word: pushes off, the lockout at its default. A name in a
//! configuration file is the operator's own, so an unknown one is refused; an unknown
//! `GATEHOUSE_*` variable is only warned about, since platforms set some of their own
//! (Kubernetes adds `GATEHOUSE_SERVICE_HOST` and the like for a service named `gatehouse`).

use rocket::figment::value::{Dict, Value};
use rocket::figment::{Figment, Profile, Provider as _, Source};

use super::PREFIX;

/// `GATEHOUSE_CONFIG`, `GATEHOUSE_LOG` and `GATEHOUSE_LOG_FORMAT`: read from the environment
/// by name (`figment()`, `cli.rs`), and nowhere else; in a file they are unknown too. Rocket's
/// `tls`, `mtls` and `secret_key` are not among the known: its features that read them are off.
const ENVIRONMENT_ONLY: &[&str] = &["config", "log", "log_format"];

/// Rocket's `limits` names any data type (`limits.file/jpg`): not checked inside.
const OPEN_ENDED: &[&str] = &["limits"];

/// Rocket's settings for its own logger, which the issuer's replaces: nothing reads them. Each
/// with the setting that does its work (read from the environment only).
const REPLACED: &[(&str, &str)] = &[("log_level", "log")];

/// A setting nothing reads, as its source names it.
#[derive(Debug, PartialEq, Eq)]
struct Unknown {
    /// `GATEHOUSE_EDGE_SYNC_URL`, or `edge_sync_url in gatehouse.toml`.
    name: String,
    /// Set in a file (refused) rather than the environment (warned about).
    in_file: bool,
    /// The known setting it is closest to, named the same way.
    suggestion: Option<String>,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a setting", self.name)?;
        match &self.suggestion {
            Some(known) => write!(f, " (did you mean {known}?)"),
            None => Ok(()),
        }
    }
}

/// What start-up and every command refuse for settings nothing reads: those in a file. Those in
/// the environment are logged as warnings here.
pub fn unknown_setting_refusals(figment: &Figment) -> Vec<String> {
    let mut refusals = Vec::new();
    for unknown in unknown_settings(figment) {
        if unknown.in_file {
            refusals.push(format!("{unknown}, and nothing would read it"));
        } else {
            tracing::warn!("{unknown}; ignored");
        }
    }
    refusals
}

/// Every setting in `figment` that neither [`Config`] nor Rocket reads.
fn unknown_settings(figment: &Figment) -> Vec<Unknown> {
    let (Ok(given), Ok(known)) = (figment.data(), super::defaults().data()) else {
        // The extraction that follows reports a figment that cannot be read.
        return Vec::new();
    };
    let Some(known) = known.get(&Profile::Default) else {
        return Vec::new();
    };
    let mut known = known.clone();
    for (replaced, _) in REPLACED {
        known.remove(*replaced);
    }
    let known = &known;
    let mut known_paths = Vec::new();
    paths_of(known, &mut Vec::new(), &mut known_paths);
    let mut found = Vec::new();
    for dict in given.values() {
        walk(dict, known, &mut Vec::new(), &mut found);
    }
    found
        .into_iter()
        .filter_map(|(path, value)| describe(figment, &path, &value, &known_paths))
        .collect()
}

/// The dotted paths of `given`'s members that `known` lacks, with their values, nested ones
/// included (`lockout.treshold`, `shutdown.grase`).
fn walk(
    given: &Dict,
    known: &Dict,
    prefix: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, Value)>,
) {
    for (key, value) in given {
        prefix.push(key.clone());
        match (known.get(key), value) {
            (None, _) => found.push((prefix.clone(), value.clone())),
            (Some(Value::Dict(_, known)), Value::Dict(_, given))
                if !OPEN_ENDED.contains(&key.as_str()) =>
            {
                walk(given, known, prefix, found);
            }
            _ => {}
        }
        prefix.pop();
    }
}

/// Every setting's path, nested ones included.
fn paths_of(known: &Dict, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in known {
        prefix.push(key.clone());
        match value {
            Value::Dict(_, known) if !OPEN_ENDED.contains(&key.as_str()) => {
                paths_of(known, prefix, out);
            }
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

/// The unknown setting at `path` as its source names it; `None` for one read by name from the
/// environment.
fn describe(
    figment: &Figment,
    path: &[String],
    value: &Value,
    known: &[Vec<String>],
) -> Option<Unknown> {
    let metadata = figment.get_metadata(value.tag());
    let file = metadata.and_then(|m| match &m.source {
        Some(Source::File(file)) => Some(file.display().to_string()),
        _ => None,
    });
    let from_env = metadata.is_some_and(|m| m.name.contains("environment"));
    if let [name] = path
        && from_env
        && ENVIRONMENT_ONLY.contains(&name.as_str())
    {
        return None;
    }
    // A replaced setting's own default is in every figment: only one an operator set counts.
    let replacement = REPLACED
        .iter()
        .find(|(replaced, _)| path == [*replaced])
        .map(|(_, by)| format!("{PREFIX}{}", by.to_ascii_uppercase()));
    if replacement.is_some() && !from_env && file.is_none() {
        return None;
    }
    // A variable as it is written: `GATEHOUSE_LOCKOUT__THRESHOLD`.
    let key_of = |path: &[String]| {
        if from_env {
            format!("{PREFIX}{}", path.join("__").to_ascii_uppercase())
        } else {
            path.join(".")
        }
    };
    // Compared as an environment variable spells them, where a nested key's `__` and a
    // word's `_` are one character apart.
    let flat = |path: &[String]| path.join("__");
    let suggestion = known
        .iter()
        .map(|candidate| {
            (
                strsim::levenshtein(&flat(path), &flat(candidate)),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| key_of(candidate))
        .or(replacement);
    Some(Unknown {
        name: match &file {
            Some(file) => format!("{} in {file}", key_of(path)),
            None => key_of(path),
        },
        in_file: file.is_some(),
        suggestion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail returns its own error type
    fn misspelt_settings_are_named_with_the_setting_meant() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GATEHOUSE_EDGE_SYNC_URL", "http://edge/_gatehouse/sync");
            jail.set_env("GATEHOUSE_LOCKOUT_THRESHOLD", "3");
            jail.set_env("GATEHOUSE_LOCKOUT__THRESHHOLD", "3");
            jail.set_env("GATEHOUSE_SERVICE_HOST", "10.0.0.1");
            jail.set_env("GATEHOUSE_SHUTDOWN__GRASE", "5");
            // Rocket's, for the logger the issuer replaces.
            jail.set_env("GATEHOUSE_LOG_LEVEL", "critical");
            // Known ones, ours and Rocket's, and those read elsewhere.
            for (name, value) in [
                ("GATEHOUSE_LOCKOUT__THRESHOLD", "3"),
                ("GATEHOUSE_PORT", "8001"),
                ("GATEHOUSE_LIMITS__FILE/JPG", "1MiB"),
                ("GATEHOUSE_SHUTDOWN__GRACE", "5"),
                ("GATEHOUSE_WORKERS", "4"),
                ("GATEHOUSE_KEEP_ALIVE", "5"),
                ("GATEHOUSE_LOG_FORMAT", "json"),
                ("GATEHOUSE_LOG", "info"),
            ] {
                jail.set_env(name, value);
            }
            jail.create_file(
                "gatehouse.toml",
                "acess_token_ttl_secs = 60\nleeway_secs = 5\nconfig = \"x.toml\"\n\
                 [password]\nm_cots = 19456\n[tls]\ncerts = \"c.pem\"\n",
            )?;
            let mut found = unknown_settings(&super::super::figment());
            found.sort_by(|a, b| a.name.cmp(&b.name));
            let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                [
                    "GATEHOUSE_EDGE_SYNC_URL is not a setting (did you mean GATEHOUSE_EDGE_SYNC_URLS?)".to_owned(),
                    "GATEHOUSE_LOCKOUT_THRESHOLD is not a setting (did you mean GATEHOUSE_LOCKOUT__THRESHOLD?)".to_owned(),
                    "GATEHOUSE_LOCKOUT__THRESHHOLD is not a setting (did you mean GATEHOUSE_LOCKOUT__THRESHOLD?)".to_owned(),
                    "GATEHOUSE_LOG_LEVEL is not a setting (did you mean GATEHOUSE_LOG?)".to_owned(),
                    "GATEHOUSE_SERVICE_HOST is not a setting".to_owned(),
                    "GATEHOUSE_SHUTDOWN__GRASE is not a setting (did you mean GATEHOUSE_SHUTDOWN__GRACE?)".to_owned(),
                    "acess_token_ttl_secs in gatehouse.toml is not a setting (did you mean access_token_ttl_secs?)".to_owned(),
                    // Read from the environment only; Rocket's TLS is not built in.
                    "config in gatehouse.toml is not a setting".to_owned(),
                    "password.m_cots in gatehouse.toml is not a setting (did you mean password.m_cost?)".to_owned(),
                    "tls in gatehouse.toml is not a setting".to_owned(),
                ]
            );
            let in_file: Vec<bool> = found.iter().map(|u| u.in_file).collect();
            assert_eq!(
                in_file,
                [
                    false, false, false, false, false, false, true, true, true, true
                ]
            );
            Ok(())
        });
    }

    /// Rocket's `log_level` set in a file is named with the setting that works; its own
    /// default, in every figment, is not (a first version warned about it at every start).
    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail returns its own error type
    fn rockets_log_level_is_named_with_the_setting_that_works() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(unknown_settings(&super::super::figment()), Vec::new());
            jail.create_file("gatehouse.toml", "log_level = \"debug\"\n")?;
            let found = unknown_settings(&super::super::figment());
            let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
            assert_eq!(
                shown,
                ["log_level in gatehouse.toml is not a setting (did you mean GATEHOUSE_LOG?)"]
            );
            assert!(found[0].in_file, "refused, not only warned about");
            Ok(())
        });
    }
}
