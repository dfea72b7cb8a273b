import * as grpc from "@grpc/grpc-js";
import { DomainError, fromServiceError, toServiceError } from "./errors";

const asClientError = (partial: Partial<grpc.ServiceError>) =>
  Object.assign(new Error(partial.details ?? ""), { code: grpc.status.UNKNOWN, details: "", metadata: new grpc.Metadata(), ...partial }) as grpc.ServiceError;

describe("error mapping between services", () => {
  it("carries a domain error's reason and details through gRPC unchanged", () => {
    const sent = toServiceError(new DomainError("insufficient_credits", "not enough", { requested: 3n, available: 1n }));
    expect(sent.code).toBe(grpc.status.FAILED_PRECONDITION);
    const received = fromServiceError(asClientError(sent));
    expect(received).toMatchObject({ reason: "insufficient_credits", message: "not enough", details: { requested: "3", available: "1" } });
  });

  it("hides unexpected errors as internal", () => {
    const sent = toServiceError(new Error("connection string postgres://secret"));
    expect(sent).toMatchObject({ code: grpc.status.INTERNAL, details: "internal error" });
    expect(fromServiceError(asClientError(sent)).reason).toBe("internal");
  });

  it("maps transport statuses without a reason to what the caller can do about them", () => {
    expect(fromServiceError(asClientError({ code: grpc.status.UNAVAILABLE })).reason).toBe("unavailable");
    expect(fromServiceError(asClientError({ code: grpc.status.DEADLINE_EXCEEDED })).reason).toBe("deadline_exceeded");
    // e.g. a response over the message size limit: a server fault, never the caller's 429/402.
    expect(fromServiceError(asClientError({ code: grpc.status.RESOURCE_EXHAUSTED })).reason).toBe("internal");
    expect(fromServiceError(asClientError({ code: grpc.status.FAILED_PRECONDITION })).reason).toBe("internal");
  });
});

import { describeError } from "./database-errors";

describe("describeError", () => {
  it("keeps a database error's type and SQLSTATE but not its statement", () => {
    class UniqueConstraintViolationException extends Error {
      sqlState = "23505";
    }
    const error = new UniqueConstraintViolationException("insert into accounts (email, password_hash) values ('ada@example.com', '$argon2id$...')");
    error.name = "UniqueConstraintViolationException";
    const described = JSON.stringify(describeError(error));
    expect(described).toContain("23505");
    expect(described).not.toContain("ada@example.com");
    expect(described).not.toContain("argon2id");
  });

  it("keeps other errors' message for debugging", () => {
    expect(describeError(new TypeError("x is undefined"))).toMatchObject({ type: "TypeError", message: "x is undefined" });
  });
});
