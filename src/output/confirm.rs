//! The question berth asks before a change an operator cannot take back (removing what berth
//! made, unregistering runners, restarting Docker), as Terraform asks before `apply`. Only a
//! person at a terminal is asked; a script or a timer must say `--yes` up front, so a run that
//! nobody watches never hangs on a prompt nor goes ahead unasked.

#![allow(clippy::print_stderr)]

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{Context as _, Result, bail};

use crate::plan::Change;

/// How a run that needs consent gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consent {
    /// `--yes`: go ahead without asking.
    Given,
    /// Ask on the terminal; refuse when there is none.
    Ask,
}

/// True when a person can be asked: stdin and stderr are a terminal.
pub(crate) fn at_terminal() -> bool {
    io::stdin().is_terminal() && io::stderr().is_terminal()
}

/// Whether `apply` (without a saved plan) asks before it goes ahead: only when a change cannot
/// be taken back ([`Change::needs_consent`]), nobody said `--yes`, and a person is there to
/// answer. Without a terminal (the timer, a script) apply goes ahead unasked, as it always did:
/// the systemd unit runs it with no terminal, so it never asks.
pub(crate) fn should_ask<'a>(
    consent: Consent,
    at_terminal: bool,
    changes: impl IntoIterator<Item = &'a Change>,
) -> bool {
    consent == Consent::Ask && at_terminal && changes.into_iter().any(Change::needs_consent)
}

/// Asks `question` on stderr and reads the answer from stdin. Only `yes` goes ahead, as in
/// Terraform: a slip of `y` or Enter does not destroy anything. Without a terminal on both
/// ends, nothing is asked and the run is refused with the flag that would allow it.
pub(crate) fn confirm(consent: Consent, question: &str, flag_hint: &str) -> Result<bool> {
    if consent == Consent::Given {
        return Ok(true);
    }
    if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
        bail!("{question} needs confirmation, and there is no terminal to ask on: {flag_hint}");
    }
    ask(question, &mut io::stdin().lock(), &mut io::stderr())
}

fn ask(question: &str, input: &mut impl BufRead, output: &mut impl Write) -> Result<bool> {
    write!(output, "{question}\n  Only 'yes' will be accepted: ")
        .context("asking for confirmation")?;
    output.flush().context("asking for confirmation")?;
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .context("reading the answer to the confirmation")?;
    Ok(answer.trim() == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_goes_ahead() {
        for (answer, expected) in [
            ("yes\n", true),
            ("y\n", false),
            ("\n", false),
            ("", false),
            (" yes \n", true),
            ("YES\n", false),
        ] {
            let mut output = Vec::new();
            let agreed = ask("Remove 3 objects?", &mut answer.as_bytes(), &mut output).unwrap();
            assert_eq!(agreed, expected, "answer {answer:?}");
            assert!(
                String::from_utf8(output)
                    .unwrap()
                    .starts_with("Remove 3 objects?")
            );
        }
    }

    #[test]
    fn apply_asks_only_a_person_about_what_cannot_be_taken_back() {
        use crate::plan::{Action, Kind, ResourceId};
        let restart = Change::new(ResourceId::new(Kind::Daemon, "docker"), Action::Restart, "");
        let create = Change::new(ResourceId::new(Kind::Network, "ci"), Action::Create, "");
        assert!(should_ask(Consent::Ask, true, [&create, &restart]));
        assert!(!should_ask(Consent::Ask, true, [&create]));
        assert!(!should_ask(Consent::Ask, false, [&restart]), "no terminal");
        assert!(!should_ask(Consent::Given, true, [&restart]), "--yes");
    }

    #[test]
    fn given_consent_asks_nothing() {
        assert!(confirm(Consent::Given, "Remove?", "pass --yes").unwrap());
    }
}
