import type { FastifyRequest } from "fastify";
import { DomainError } from "@tally/platform/src/stateless";
import type { credits } from "@tally/contracts";
import type { RouteContext } from "./context";
import { subjectOf } from "./limits";

/**
 * After a sign-up with `X-Guest-ID` (credits CreateAccount with `adopt_guest_id` marked the
 * guest adopted by the new user in its transaction): the guest's generations (generations
 * AdoptGuestGenerations), then its usage of the current period and day (usage AdoptGuest,
 * limits are not reset by signing up), move to the user. Only when credits says this very
 * user adopted the guest: an id that named no guest, or one adopted earlier by someone
 * else, moves nothing. Each step is idempotent, so a retried sign-up (the same
 * Idempotency-Key replays CreateAccount's answer) redoes whatever an interrupted one left.
 * Errors: the services' reasons (e.g. `unavailable`: the account exists; retry with the key).
 */
export async function adoptGuest(context: RouteContext, request: FastifyRequest, guestId: string, user: credits.Account | undefined): Promise<void> {
  if (!user) return;
  const call = context.callFor(request);
  const { credits: creditsClient, generations: generationsClient, usage: usageClient } = context.clients;
  let guest: credits.Account | undefined;
  try {
    guest = (await call(creditsClient.getAccount.bind(creditsClient), { accountId: guestId })).account;
  } catch (error) {
    if (error instanceof DomainError && error.reason === "not_found") return;
    throw error;
  }
  if (guest?.adoptedBy !== user.id) return;
  await call(generationsClient.adoptGuestGenerations.bind(generationsClient), { guestId, userId: user.id });
  await call(usageClient.adoptGuest.bind(usageClient), { guestId, user: subjectOf(user) });
}
