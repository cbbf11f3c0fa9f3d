//! Records the commit the binary is built from, for `portcullis_build_info`:
//! `$PORTCULLIS_COMMIT` when set (a build without `.git`, as the container
//! image's), else what `git rev-parse` says, else "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_COMMIT");
    let commit = match std::env::var("PORTCULLIS_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // Built again when HEAD moves: the HEAD file and the branch it names
            // (only files that exist: a missing one would rebuild every time).
            for path in ["HEAD", "packed-refs"]
                .iter()
                .filter_map(|p| git(&["rev-parse", "--git-path", p]))
                .chain(git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])))
            {
                if Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=PORTCULLIS_COMMIT={commit}");
}
