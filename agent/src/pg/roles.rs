//! The replication role: `REPLICATION LOGIN`, never superuser, with the
//! password from `replication.password_file`.
//!
//! The password is sent as a SCRAM verifier computed here, so the clear
//! text never reaches the server (nor its log, whatever `log_statement` says).

use super::probe::{Probe, ProbeError};

/// Creates the replication role, or brings an existing one back to
/// `REPLICATION LOGIN NOSUPERUSER` with the current password.
pub async fn ensure_replication_role(
    probe: &mut Probe,
    user: &str,
    password: &str,
) -> Result<(), ProbeError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let sql = replication_role_sql(user, &verifier);
    probe.execute(&sql).await
}

/// The statement creating or updating the role (pure, for tests).
pub fn replication_role_sql(user: &str, verifier: &str) -> String {
    let ident = quote_ident(user);
    let literal = quote_literal(verifier);
    let name = quote_literal(user);
    format!(
        "DO $pgwarden$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {name}) THEN
    ALTER ROLE {ident} WITH REPLICATION LOGIN NOSUPERUSER PASSWORD {literal};
  ELSE
    CREATE ROLE {ident} WITH REPLICATION LOGIN NOSUPERUSER PASSWORD {literal};
  END IF;
END $pgwarden$;"
    )
}

/// An SQL identifier, double-quoted.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An SQL string literal, single-quoted (standard_conforming_strings is on since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_statement_quotes_names_and_never_contains_the_clear_password() {
        let verifier = postgres_protocol::password::scram_sha_256(b"s3cret'pw");
        let sql = replication_role_sql("repl\"user", &verifier);
        assert!(sql.contains("CREATE ROLE \"repl\"\"user\" WITH REPLICATION LOGIN NOSUPERUSER PASSWORD 'SCRAM-SHA-256$"));
        assert!(!sql.contains("s3cret"));
        assert!(sql.contains("rolname = 'repl\"user'"));
    }
}
