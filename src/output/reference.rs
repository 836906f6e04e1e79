//! berth's own reference, generated from the command line's definition so it never drifts from
//! `--help`: the man page (`berth man`, roff) and the shell completions (`berth completions
//! SHELL`). install.sh and the Debian package write both where man and the shells look.

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> io::Result<()> {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "berth", &mut buffer);
    write_all(&buffer)
}

/// Writes berth(1) to stdout: the top-level page with every subcommand and its flags.
pub(crate) fn man_page() -> io::Result<()> {
    let command = Cli::command();
    let mut buffer = Vec::new();
    let man = clap_mangen::Man::new(command.clone())
        .section("1")
        .manual("berth manual")
        .source(format!("berth {}", env!("CARGO_PKG_VERSION")))
        .date(env!("BERTH_COMMIT_DATE"));
    man.render_title(&mut buffer)?;
    man.render_name_section(&mut buffer)?;
    man.render_synopsis_section(&mut buffer)?;
    man.render_description_section(&mut buffer)?;
    man.render_options_section(&mut buffer)?;
    // One page, as operators expect `man berth` to hold it all: each visible subcommand's
    // synopsis, what it does and its own flags, in the order of `--help`.
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let bin_name = format!("berth {}", subcommand.get_name());
        let sub_man = clap_mangen::Man::new(subcommand.clone().bin_name(bin_name));
        writeln!(
            buffer,
            ".SH \"BERTH {}\"",
            subcommand.get_name().to_uppercase()
        )?;
        render_subcommand(&sub_man, &mut buffer)?;
    }
    man.render_version_section(&mut buffer)?;
    write_all(&buffer)
}

/// A subcommand's description and options, its section headers demoted to subsections so
/// they sit under the subcommand's own `.SH`.
fn render_subcommand(man: &clap_mangen::Man, out: &mut Vec<u8>) -> io::Result<()> {
    let mut text = Vec::new();
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    man.render_options_section(&mut text)?;
    let text = String::from_utf8_lossy(&text).replace(".SH ", ".SS ");
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_all(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}
