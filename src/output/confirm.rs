//! The question berth asks before a change an operator cannot take back (removing what berth
//! made, unregistering runners, restarting Docker), as Terraform asks before `apply`. Only a
//! person at a terminal is asked; a script or a timer must say `--yes` up front, so a run that
//! nobody watches never hangs on a prompt nor goes ahead unasked.

#![allow(clippy::print_stderr)]
#![allow(
    dead_code,
    reason = "destroy and apply's confirmation use it; they land next"
)]

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{Context as _, Result, bail};

/// How a run that needs consent gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consent {
    /// `--yes`: go ahead without asking.
    Given,
    /// Ask on the terminal; refuse when there is none.
    Ask,
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
    fn given_consent_asks_nothing() {
        assert!(confirm(Consent::Given, "Remove?", "pass --yes").unwrap());
    }
}
