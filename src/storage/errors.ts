/** Kind of constraint a driver error reports, across SQLite and PostgreSQL. */
export type ConstraintKind = "unique" | "foreign_key" | "check" | "not_null";

/**
 * Classifies a driver error as a constraint violation, or returns null. better-sqlite3 reports
 * extended result codes (`SQLITE_CONSTRAINT_UNIQUE`); node-postgres reports SQLSTATE (`23505`).
 */
export function constraintViolation(error: unknown): ConstraintKind | null {
  if (typeof error !== "object" || error === null || !("code" in error)) return null;

  const code = String(error.code);
  switch (code) {
    case "SQLITE_CONSTRAINT_UNIQUE":
    case "SQLITE_CONSTRAINT_PRIMARYKEY":
    case "23505":
      return "unique";
    case "SQLITE_CONSTRAINT_FOREIGNKEY":
    case "23503":
      return "foreign_key";
    case "SQLITE_CONSTRAINT_CHECK":
    case "23514":
      return "check";
    case "SQLITE_CONSTRAINT_NOTNULL":
    case "23502":
      return "not_null";
    default:
      return null;
  }
}
