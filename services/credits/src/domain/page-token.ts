import { validationError } from "@tally/platform";

/**
 * Keyset position in an account's ledger: entries are listed newest first by `position`
 * (a sequence that grows in commit order per account, since each movement holds the account
 * row lock). The token also names the account so that a token cannot page another account.
 */
export interface LedgerCursor {
  accountId: string;
  /** Position of the last entry of the previous page; the next page starts below it. */
  position: bigint;
}

const TOKEN_VERSION = 1;

/** Encodes a cursor as an opaque, URL-safe token. */
export function encodePageToken(cursor: LedgerCursor): string {
  const json = JSON.stringify({ v: TOKEN_VERSION, a: cursor.accountId, p: cursor.position.toString() });
  return Buffer.from(json, "utf8").toString("base64url");
}

/**
 * Decodes a token from `encodePageToken` for `accountId`. Throws a `validation` DomainError for
 * anything else: malformed, from another version, or issued for another account.
 */
export function decodePageToken(token: string, accountId: string): LedgerCursor {
  const invalid = () => validationError("page_token is not a token this service issued for this account", { field: "page_token" });
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== "object" || parsed === null) throw invalid();
  const { v, a, p } = parsed as Record<string, unknown>;
  if (v !== TOKEN_VERSION || a !== accountId || typeof p !== "string" || !/^[1-9][0-9]{0,18}$/.test(p)) throw invalid();
  return { accountId, position: BigInt(p) };
}
