import assert from "node:assert";
import { SignJWT, jwtVerify, errors as joseErrors } from "jose";
import { DomainError } from "@tally/platform/src/stateless";

/** What an access token carries: a signed-up user's account id, role and email. */
export interface TokenClaims {
  /** The credits account id (token `sub`). */
  accountId: string;
  role: "user" | "admin";
  email: string;
}

/** A signed-up user (or admin), known by a valid bearer token. */
export interface UserPrincipal extends TokenClaims {
  kind: "user";
}

/**
 * A guest: no token, a self-asserted `X-Guest-ID` (a UUID) whose credits account exists
 * (EnsureGuestAccount). Its account id is the guest id; `plan` is the account's plan.
 */
export interface GuestPrincipal {
  kind: "guest";
  accountId: string;
  plan: string;
}

/** Who a request acts for. */
export type Principal = UserPrincipal | GuestPrincipal;

export interface AccessTokenOptions {
  /** HMAC key, at least 32 characters (checked by the config schema). */
  secret: string;
  issuer: string;
  ttlSeconds: number;
  /** Verified tokens remembered (their signature is not checked again until they expire); 0: none. Default VERIFIED_TOKENS_MAX. */
  verifiedTokensMax?: number;
  /** The clock, in epoch milliseconds (tests inject it); the signature check itself uses jose's clock. */
  nowMs?: () => number;
}

/** Verified tokens remembered by default: a few MB at most (a token is a few hundred bytes). */
export const VERIFIED_TOKENS_MAX = 10_000;

const ALGORITHM = "HS256";

/** An issued access token and its lifetime in seconds (the `expires_in` of the answer). */
export interface IssuedToken {
  accessToken: string;
  expiresIn: number;
}

/**
 * Issues and verifies the gateway's access tokens: HS256 JWTs with `sub` = account id, `role`,
 * `email`, `iss` and `exp` (the issue's requirement). Verification accepts only HS256 (no
 * `alg: none`, no algorithm confusion) and only our issuer.
 *
 * A token that verified is remembered (the exact token string, up to `verifiedTokensMax`, the
 * oldest forgotten first) until its `exp`: a client sends the same token with every request,
 * and checking its HMAC again each time was the gateway's largest cost per request. What a
 * token names cannot change (it is signed), and an expired one is refused as before; an
 * account deleted since is refused by the live-account check, which never caches.
 */
export class AccessTokens {
  private readonly key: Uint8Array;
  private readonly verified = new Map<string, { principal: UserPrincipal; expiresAtMs: number }>();
  private readonly verifiedMax: number;
  private readonly nowMs: () => number;

  constructor(private readonly options: AccessTokenOptions) {
    assert(options.secret.length >= 32, "JWT secret must be at least 32 characters");
    assert(Number.isInteger(options.ttlSeconds) && options.ttlSeconds > 0, "token ttl must be a positive integer");
    this.key = new TextEncoder().encode(options.secret);
    this.verifiedMax = options.verifiedTokensMax ?? VERIFIED_TOKENS_MAX;
    this.nowMs = options.nowMs ?? Date.now;
  }

  /** Signs a token for `principal`, valid for the configured ttl from now. */
  async issue(principal: TokenClaims): Promise<IssuedToken> {
    const nowSeconds = Math.floor(Date.now() / 1000);
    const accessToken = await new SignJWT({ role: principal.role, email: principal.email })
      .setProtectedHeader({ alg: ALGORITHM, typ: "JWT" })
      .setSubject(principal.accountId)
      .setIssuer(this.options.issuer)
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + this.options.ttlSeconds)
      .sign(this.key);
    return { accessToken, expiresIn: this.options.ttlSeconds };
  }

  /**
   * Verifies a token's signature, issuer and expiry and returns its principal (a token that
   * verified before and has not expired is answered from memory, see the class).
   * Errors: DomainError `unauthenticated` for anything wrong with the token (the message says
   * whether it expired, so a client knows to sign in again).
   */
  async verify(token: string): Promise<UserPrincipal> {
    const known = this.verified.get(token);
    if (known) {
      if (this.nowMs() < known.expiresAtMs) return { ...known.principal };
      this.verified.delete(token);
      throw new DomainError("unauthenticated", "access token expired");
    }
    const { principal, expiresAtMs } = await this.check(token);
    this.remember(token, principal, expiresAtMs);
    return { ...principal };
  }

  /** Remembers a verified token until `expiresAtMs`, forgetting the oldest beyond the bound. */
  private remember(token: string, principal: UserPrincipal, expiresAtMs: number): void {
    if (this.verifiedMax === 0) return;
    if (this.verified.size >= this.verifiedMax) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { principal, expiresAtMs });
  }

  /** The signature, issuer, claims and expiry check itself (jose); the principal and `exp` in epoch milliseconds. */
  private async check(token: string): Promise<{ principal: UserPrincipal; expiresAtMs: number }> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: [ALGORITHM],
        issuer: this.options.issuer,
        requiredClaims: ["sub", "exp"],
      });
      const role = payload.role;
      const email = payload.email;
      if (typeof payload.sub !== "string" || payload.sub === "" || (role !== "user" && role !== "admin") || typeof email !== "string") {
        throw new DomainError("unauthenticated", "access token is missing required claims");
      }
      return { principal: { kind: "user", accountId: payload.sub, role, email }, expiresAtMs: payload.exp! * 1000 };
    } catch (error) {
      if (error instanceof DomainError) throw error;
      if (error instanceof joseErrors.JWTExpired) throw new DomainError("unauthenticated", "access token expired");
      throw new DomainError("unauthenticated", "access token is invalid");
    }
  }
}
