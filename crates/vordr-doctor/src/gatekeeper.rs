//! The gatekeeper's policy library (Ada/SPARK, linked with GNAT's runtime):
//! one harmless container and one privileged one, judged in this process.

use vordr_gatekeeper::{
    validate, GateError, Input, NamespacePolicy, NetworkMode, Profile, Rule, Verdict,
};

use crate::Check;

const NAME: &str = "gatekeeper";

pub fn check() -> Check {
    judge(validate)
}

/// The check, with `validate` standing for the library's call.
fn judge(validate: impl Fn(&Input) -> Result<Verdict, GateError>) -> Check {
    let fix = "rebuild vordr with GNAT (gprbuild, gnat) installed: ./scripts/setup.sh, then \
               cargo build --release -p vordr";
    let harmless = Input::harmless(NamespacePolicy {
        profile: Profile::Restricted,
        network: NetworkMode::Default,
        allow_privileged: false,
    });
    let privileged = Input {
        privileged: true,
        ..harmless
    };
    match (validate(&harmless), validate(&privileged)) {
        (Ok(Verdict::Allowed), Ok(Verdict::Denied(Rule(1)))) => Check::ok(
            NAME,
            format!(
                "the policy library (version {}, {} rules) answers: a harmless container \
                 allowed, a privileged one denied by rule 1",
                vordr_gatekeeper::version(),
                vordr_gatekeeper::rule_count()
            ),
        ),
        (a, b) => Check::missing(
            NAME,
            format!(
                "the policy library answered {a:?} for a harmless container and {b:?} for a \
                 privileged one (expected Allowed, then Denied by rule 1): every pod would be \
                 refused or wrongly judged"
            ),
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn the_linked_library_answers() {
        let c = check();
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("rule 1"), "{c:?}");
    }

    #[test]
    fn a_library_that_answers_wrong_is_missing() {
        let c = judge(|_| Ok(Verdict::Allowed));
        assert_eq!(c.status, Status::Missing);
        let c = judge(|_| Err(GateError::PolicyFailure));
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("PolicyFailure"), "{c:?}");
    }
}
