import { decodePageToken, encodePageToken } from "@tally/platform";

/**
 * Keyset position in an account's ledger: entries are listed newest first by `position`
 * (a sequence that grows in commit order per account, since each movement holds the account
 * row lock). The page token is scoped to the account, so a token cannot page another account.
 */
export interface LedgerCursor {
  accountId: string;
  /** Position of the last entry of the previous page; the next page starts below it. */
  position: bigint;
}

/** A position as it travels in a token: a positive int8 in decimal. */
const POSITION_PATTERN = /^[1-9][0-9]{0,18}$/;

/** Encodes a cursor as an opaque, URL-safe page token (platform `encodePageToken`, scope = account id). */
export const encodeLedgerCursor = (cursor: LedgerCursor): string =>
  encodePageToken(cursor.accountId, { position: cursor.position.toString() });

/**
 * Decodes a page token from `encodeLedgerCursor` for `accountId`. Throws `validation` (field
 * `page_token`) for anything else: malformed, of another version, or issued for another account.
 */
export function decodeLedgerCursor(token: string, accountId: string): LedgerCursor {
  const { position } = decodePageToken(token, accountId, { position: POSITION_PATTERN });
  return { accountId, position: BigInt(position!) };
}
