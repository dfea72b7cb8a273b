/**
 * `npm run admin -- <command>`: operator commands against a running credits service, over gRPC.
 *
 *   npm run admin -- promote <email>   makes the account registered with <email> an admin
 *
 * Environment: `CREDITS_GRPC_ADDRESS` (`127.0.0.1:50051`). Prints the account on success; on
 * an error prints its reason and message to stderr and exits 1. `TALLY_ADMIN_EMAILS` on the
 * credits service makes the first admin at registration; this promotes an existing account.
 */
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, DomainError, newId } from "@tally/platform";

/** How long one command may take, in milliseconds. */
const CALL_TIMEOUT_MS = 10_000;
const DEFAULT_CREDITS_GRPC_ADDRESS = "127.0.0.1:50051";
const USAGE = "usage: npm run admin -- promote <email>";

/** The account as the operator reads it: enum names, ISO times, no empty fields. */
function describeAccount(account: credits.Account): Record<string, unknown> {
  return {
    id: account.id,
    email: account.email,
    kind: credits.accountKindToJSON(account.kind),
    role: credits.roleToJSON(account.role),
    plan: account.plan,
    created_at: account.createdAt?.toISOString(),
    current_period_start: account.currentPeriodStart?.toISOString(),
  };
}

/** Promotes the account registered with `email` to admin (credits SetRole; a fresh request_id). */
async function promote(client: credits.CreditsServiceClient, email: string): Promise<credits.Account> {
  const request = { requestId: newId(), email, role: credits.Role.ROLE_ADMIN };
  const { account } = await callUnary(client.setRole.bind(client), request, { timeoutMs: CALL_TIMEOUT_MS });
  if (!account) throw new DomainError("internal", "SetRole answered no account");
  return account;
}

async function main(argv: string[]): Promise<number> {
  const [command, email, ...rest] = argv;
  if (command !== "promote" || !email || rest.length > 0) {
    process.stderr.write(`${USAGE}\n`);
    return 1;
  }
  const client = createGrpcClient(credits.CreditsServiceClient, process.env.CREDITS_GRPC_ADDRESS || DEFAULT_CREDITS_GRPC_ADDRESS);
  try {
    const account = await promote(client, email);
    process.stdout.write(`${JSON.stringify(describeAccount(account), null, 2)}\n`);
    return 0;
  } catch (error) {
    const reason = error instanceof DomainError ? error.reason : "internal";
    process.stderr.write(`promote failed: ${reason}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`admin failed: ${String(error)}\n`);
    process.exit(1);
  },
);
