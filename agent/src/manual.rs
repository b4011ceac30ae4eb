//! The man pages and shell completions the Debian package installs, made
//! from the command line's own definition (the clap `Command` of
//! `main.rs`), so that they say what `--help` says and cannot drift from
//! it. `scripts/package` runs them through the hidden `pgwarden generate`.
//!
//! Hidden subcommands (the fence guard, `generate` itself) are left out of
//! both: they are the agent's internals, not something to type.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Writing a page or a completion script failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source} (is --out an existing, writable directory?)")]
pub struct ManualError {
    /// The file that could not be written.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// What the FILES section of `pgwarden(1)` lists: where the package puts
/// things an operator edits or reads.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/pgwarden/pgwarden.toml",
        "the node's configuration (see pgwarden check-config); secrets live in the files it names, mode 0600, owned by postgres",
    ),
    (
        "/etc/pgwarden/INSTANCE.toml",
        "the configuration of pgwarden@INSTANCE.service, for a host that runs more than one cluster",
    ),
    (
        "/usr/share/doc/pgwarden/",
        "README.md and the documentation: configuration.md (every key), operations.md (running it), api.md (the HTTP API)",
    ),
];

/// Writes `pgwarden.1` and one page per visible subcommand
/// (`pgwarden-run.1`, `pgwarden-switchover.1`, ...) into `dir`, uncompressed;
/// returns their paths, the main page first.
pub fn write_man_pages(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_string();
    let subcommands: Vec<Command> = visible_subcommands(&cmd).cloned().collect();

    let mut written = Vec::new();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    render_main_page(&cmd, &subcommands, &mut page).map_err(|source| ManualError {
        path: path.clone(),
        source,
    })?;
    write_file(&path, &page)?;
    written.push(path);

    for sub in subcommands {
        let man = clap_mangen::Man::new(sub).manual("pgwarden manual");
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page).map_err(|source| ManualError {
            path: path.clone(),
            source,
        })?;
        see_also(&mut page, &[format!("{name}(1)")]);
        write_file(&path, &page)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the completion script for `shell` into `dir` under the name that
/// shell looks for (`pgwarden` for bash, `_pgwarden` for zsh,
/// `pgwarden.fish` for fish); returns its path.
pub fn write_completions(cmd: Command, shell: Shell, dir: &Path) -> Result<PathBuf, ManualError> {
    let mut cmd = without_hidden_subcommands(cmd);
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, &name, &mut script);
    let path = dir.join(completion_file_name(shell, &name));
    write_file(&path, &script)?;
    Ok(path)
}

/// The file name `shell` loads the completions of command `name` from.
pub fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        Shell::Elvish => format!("{name}.elv"),
        Shell::PowerShell => format!("_{name}.ps1"),
        // bash-completion finds a command's script by the command's name
        _ => name.to_string(),
    }
}

fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// `cmd` rebuilt with its visible subcommands only: clap_complete offers
/// hidden subcommands too.
fn without_hidden_subcommands(cmd: Command) -> Command {
    let visible: Vec<Command> = visible_subcommands(&cmd).cloned().collect();
    let hidden: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    if hidden.is_empty() {
        return cmd;
    }
    // Command has no way to remove a subcommand: copy what completions
    // use of the top level onto a new one, with the visible subcommands.
    let mut bare = Command::new(cmd.get_name().to_string())
        .subcommand_required(cmd.is_subcommand_required_set())
        .arg_required_else_help(cmd.is_arg_required_else_help_set());
    if let Some(v) = cmd.get_version() {
        bare = bare.version(v.to_string());
    }
    if let Some(about) = cmd.get_about() {
        bare = bare.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        bare = bare.long_about(about.clone());
    }
    for arg in cmd.get_arguments() {
        if arg.get_id() != "help" && arg.get_id() != "version" {
            bare = bare.arg(arg.clone());
        }
    }
    bare.subcommands(visible)
}

/// `pgwarden(1)`: clap_mangen's sections, then FILES and SEE ALSO, which
/// clap knows nothing of.
fn render_main_page(cmd: &Command, subs: &[Command], w: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("pgwarden manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut files = String::from(".SH FILES\n");
    for (path, what) in FILES {
        files.push_str(&format!(
            ".TP\n\\fI{}\\fR\n{}\n",
            roff_text(path),
            roff_text(what)
        ));
    }
    w.write_all(files.as_bytes())?;
    let pages: Vec<String> = subs
        .iter()
        .map(|s| format!("{}(1)", s.get_display_name().unwrap_or(s.get_name())))
        .chain(["systemctl(1)".to_string(), "postgres(1)".to_string()])
        .collect();
    see_also(w, &pages);
    man.render_version_section(w)?;
    Ok(())
}

/// Appends a SEE ALSO section naming `pages`.
fn see_also(w: &mut Vec<u8>, pages: &[String]) {
    let list: Vec<String> = pages
        .iter()
        .map(|p| match p.split_once('(') {
            Some((name, section)) => format!("\\fB{}\\fR({section}", roff_text(name)),
            None => roff_text(p),
        })
        .collect();
    w.extend_from_slice(format!(".SH \"SEE ALSO\"\n{}\n", list.join(", ")).as_bytes());
}

/// Text escaped for roff: backslashes, and a leading dot or quote that
/// would read as a request.
fn roff_text(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), ManualError> {
    fs::write(path, contents).map_err(|source| ManualError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("A sample tool.")
            .subcommand_required(true)
            .subcommand(Command::new("run").about("Runs it."))
            .subcommand(Command::new("internal-helper").hide(true))
    }

    #[test]
    fn given_a_hidden_subcommand_the_man_pages_leave_it_out_and_name_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(sample(), dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-run.1"]);
        let main = fs::read_to_string(&pages[0]).unwrap();
        assert!(main.contains(".SH FILES"), "{main}");
        assert!(main.contains("\\fBtool\\-run\\fR(1)"), "{main}");
        assert!(!main.contains("internal"), "{main}");
    }

    #[test]
    fn given_a_hidden_subcommand_the_completions_do_not_offer_it() {
        let dir = tempfile::tempdir().unwrap();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = write_completions(sample(), shell, dir.path()).unwrap();
            let script = fs::read_to_string(&path).unwrap();
            assert!(script.contains("run"), "{shell}: {script}");
            assert!(!script.contains("internal-helper"), "{shell}: {script}");
        }
    }

    #[test]
    fn roff_text_escapes_what_roff_would_read_as_requests() {
        assert_eq!(roff_text("/etc/x-y"), "/etc/x\\-y");
        assert_eq!(roff_text(".hidden"), "\\&.hidden");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
