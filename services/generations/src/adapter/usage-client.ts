import assert from "node:assert";
import { callUnary, createGrpcClient } from "@tally/platform";
import { usage } from "@tally/contracts";
import type { LimitSubject, ReservationStatusName, ReservationView, UsagePort } from "../domain/ports";

const SUBJECT_KIND: Record<LimitSubject["kind"], usage.SubjectKind> = {
  user: usage.SubjectKind.SUBJECT_KIND_USER,
  guest: usage.SubjectKind.SUBJECT_KIND_GUEST,
};

const RESERVATION_STATUS: Partial<Record<usage.ReservationStatus, ReservationStatusName>> = {
  [usage.ReservationStatus.RESERVATION_STATUS_ACTIVE]: "active",
  [usage.ReservationStatus.RESERVATION_STATUS_CONSUMED]: "consumed",
  [usage.ReservationStatus.RESERVATION_STATUS_RELEASED]: "released",
  [usage.ReservationStatus.RESERVATION_STATUS_EXPIRED]: "expired",
};

/**
 * UsagePort over the usage service's gRPC contract. Every call carries a deadline
 * (`DOWNSTREAM_TIMEOUT_MS`) and rejects with the callee's DomainError, reason and details
 * unchanged (`plan_limit_exceeded` / `guest_limit_exceeded` with limit_name, plan, used,
 * reserved, limit, period_start, resets_at; `unavailable` when usage is down).
 */
export class GrpcUsageClient implements UsagePort {
  private readonly client: usage.UsageServiceClient;

  constructor(
    address: string,
    private readonly timeoutMs: number,
  ) {
    this.client = createGrpcClient(usage.UsageServiceClient, address);
  }

  async checkAndReserve(subject: LimitSubject, generationId: string, credits: bigint): Promise<ReservationView> {
    const request: usage.CheckAndReserveRequest = {
      subject: { id: subject.id, kind: SUBJECT_KIND[subject.kind], plan: subject.plan, periodAnchor: subject.periodAnchor },
      generationId,
      credits,
    };
    const response = await callUnary(this.client.checkAndReserve.bind(this.client), request, { timeoutMs: this.timeoutMs });
    assert.ok(response.reservation, "usage answers CheckAndReserve with the reservation");
    return toReservationView(response.reservation);
  }

  async releaseReservation(generationId: string, reason: string): Promise<ReservationView | null> {
    const response = await callUnary(this.client.releaseReservation.bind(this.client), { generationId, reason }, { timeoutMs: this.timeoutMs });
    return response.reservation ? toReservationView(response.reservation) : null;
  }

  close(): void {
    this.client.close();
  }
}

function toReservationView(reservation: usage.Reservation): ReservationView {
  const status = RESERVATION_STATUS[reservation.status];
  assert.ok(status, `usage answers a reservation with a known status (got ${reservation.status})`);
  return { generationId: reservation.generationId, status, credits: reservation.credits };
}
