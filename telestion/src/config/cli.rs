//! The command line: `--KEY=VALUE`, `--KEY VALUE`, `--flag`, `--dev`,
//! `--help`.

use crate::error::ConfigError;

/// Shortens text quoted in error messages.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}... ({} bytes)", text.len())
    }
}

/// Normalizes a CLI key: upper case, `-` becomes `_`.
fn normalize_key(raw: &str, arg: &str) -> Result<String, ConfigError> {
    if raw.is_empty() {
        return Err(ConfigError::InvalidArgument {
            arg: shorten(arg),
            reason: "the key is empty; write `--KEY=VALUE`".into(),
        });
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(ConfigError::InvalidArgument {
            arg: shorten(arg),
            reason: format!(
                "the key contains {bad:?}; keys may contain only letters, digits, `_`, `-` and `.`"
            ),
        });
    }
    Ok(raw.to_ascii_uppercase().replace('-', "_"))
}

/// The parsed command line.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct CliArgs {
    /// Keys (normalized) and values, in order; later ones win.
    pub(crate) values: Vec<(String, String)>,
    /// Whether `--dev` was given.
    pub(crate) dev: bool,
    /// Whether `--help` (or `-h`) was given.
    pub(crate) help: bool,
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// Parses CLI arguments (without the program name).
///
/// `--KEY=VALUE`, `--KEY VALUE` (when the next argument does not start with
/// `--`), a bare `--flag` means `"true"`; `--dev` and `--help`/`-h` are
/// always flags. Anything else (a stray positional argument, an empty key)
/// is an error.
pub(crate) fn parse_args<I, S>(args: I) -> Result<CliArgs, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut out = CliArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" {
            out.help = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(ConfigError::InvalidArgument {
                arg: shorten(arg),
                reason: "expected `--KEY=VALUE`, `--KEY VALUE` or `--flag`".into(),
            });
        };
        if let Some((key, value)) = body.split_once('=') {
            let key = normalize_key(key, arg)?;
            if key == "DEV" {
                out.dev = parse_bool(value).ok_or_else(|| ConfigError::InvalidArgument {
                    arg: shorten(arg),
                    reason: "`--dev` takes no value other than true or false".into(),
                })?;
                continue;
            }
            out.values.push((key, value.to_owned()));
            continue;
        }
        let key = normalize_key(body, arg)?;
        match key.as_str() {
            "DEV" => {
                out.dev = true;
                continue;
            }
            "HELP" => {
                out.help = true;
                continue;
            }
            _ => {}
        }
        match args.get(i) {
            Some(next) if !next.starts_with("--") => {
                out.values.push((key, next.clone()));
                i += 1;
            }
            _ => out.values.push((key, "true".to_owned())),
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestRunner};

    pub(crate) fn runner(cases: u32) -> TestRunner {
        TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        })
    }

    /// CLI-like arguments: mostly `--`-prefixed, with odd characters.
    pub(crate) fn arg() -> impl Strategy<Value = String> {
        prop_oneof![
            "--[a-zA-Z0-9_.-]{0,12}(=.{0,12})?",
            "--.{0,16}",
            "-{0,4}[=\\-a-z]{0,4}",
            ".{0,24}",
            Just("--".to_owned()),
            Just("--=".to_owned()),
            Just("--dev".to_owned()),
        ]
    }

    #[test]
    fn cli_arguments_never_panic_and_errors_are_clear() {
        runner(256)
            .run(&prop::collection::vec(arg(), 0..8), |args| {
                match parse_args(args.clone()) {
                    Ok(cli) => {
                        for (key, _) in &cli.values {
                            prop_assert!(!key.is_empty());
                            prop_assert!(!key.contains('-'), "key {key:?} not normalized");
                            prop_assert_eq!(key.to_ascii_uppercase(), key.clone());
                        }
                    }
                    Err(e) => {
                        let text = e.to_string();
                        prop_assert!(text.starts_with("invalid command-line argument"), "{text}");
                        prop_assert!(text.len() < 400, "error too long: {text}");
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn huge_and_odd_cli_arguments() {
        let huge = "x".repeat(1 << 20);
        // A 1 MB value is accepted intact.
        let cli = parse_args([format!("--BIG={huge}")]).unwrap();
        assert_eq!(cli.values, vec![("BIG".to_owned(), huge.clone())]);
        let cli = parse_args(["--big".to_owned(), huge.clone()]).unwrap();
        assert_eq!(cli.values[0].1.len(), huge.len());
        // A 1 MB key is accepted; a 1 MB bad argument gives a short error.
        let cli = parse_args([format!("--{huge}")]).unwrap();
        assert_eq!(cli.values[0].0.len(), huge.len());
        for bad in [
            format!("--{}=1", "ä".repeat(1 << 19)),
            "ä".repeat(1 << 19),
            format!("{huge}=1"),
        ] {
            let err = parse_args([bad]).unwrap_err().to_string();
            assert!(err.len() < 400, "error not shortened: {} bytes", err.len());
            assert!(err.contains("invalid command-line argument"), "{err}");
        }
        // Odd forms.
        let ok = |args: &[&str]| parse_args(args.iter().copied()).unwrap().values;
        let err = |args: &[&str]| parse_args(args.iter().copied()).unwrap_err().to_string();
        assert!(err(&["--"]).contains("the key is empty"));
        assert!(err(&["--="]).contains("the key is empty"));
        assert!(err(&["--=value"]).contains("the key is empty"));
        assert!(err(&["--ключ=1"]).contains("'к'"));
        assert!(err(&["--a b=1"]).contains("' '"));
        assert!(err(&["--a\0b=1"]).contains("'\\0'"));
        assert!(err(&["-x"]).contains("expected `--KEY=VALUE`"));
        assert!(err(&["--dev=maybe"]).contains("--dev"));
        assert_eq!(ok(&["---x"]), vec![("_X".to_owned(), "true".to_owned())]);
        assert_eq!(ok(&["--a=b=c"]), vec![("A".to_owned(), "b=c".to_owned())]);
        assert_eq!(
            ok(&["--a=ünï😀"]),
            vec![("A".to_owned(), "ünï😀".to_owned())]
        );
        assert_eq!(
            ok(&["--a", "--b"]),
            vec![
                ("A".to_owned(), "true".to_owned()),
                ("B".to_owned(), "true".to_owned())
            ]
        );
        assert_eq!(ok(&["--a", "-1"]), vec![("A".to_owned(), "-1".to_owned())]);
    }

    #[test]
    fn forms() {
        let cli = parse_args([
            "--a=1",
            "--data-dir",
            "/tmp",
            "--flag",
            "--dev",
            "--x.y=",
            "--last",
        ])
        .unwrap();
        assert!(cli.dev);
        assert!(!cli.help);
        assert_eq!(
            cli.values,
            vec![
                ("A".into(), "1".into()),
                ("DATA_DIR".into(), "/tmp".into()),
                ("FLAG".into(), "true".into()),
                ("X.Y".into(), "".into()),
                ("LAST".into(), "true".into()),
            ]
        );
        assert!(parse_args(["--help"]).unwrap().help);
        assert!(parse_args(["-h"]).unwrap().help);
    }

    #[test]
    fn errors() {
        for bad in [
            &["positional"][..],
            &["--"],
            &["--=x"],
            &["--a b=1"],
            &["-x"],
        ] {
            let err = parse_args(bad.iter().copied()).unwrap_err();
            assert!(
                err.to_string().contains("invalid command-line argument"),
                "{err}"
            );
        }
    }
}
