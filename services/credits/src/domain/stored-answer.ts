/**
 * Codec for the first answer to an idempotent mutation, as stored in `idempotency_keys`:
 * JSON that keeps `bigint` (credits) and `Date` values exact, so a retry returns an answer
 * equal to the first one, to the credit and the millisecond.
 */
export const storedAnswerCodec = {
  encode(value: unknown): Uint8Array {
    const json = JSON.stringify(value, function (this: Record<string, unknown>, key: string, current: unknown) {
      // `this[key]` is the value before Date#toJSON ran, so Dates can be told apart from strings.
      const original = this[key];
      if (typeof original === "bigint") return { $bigint: original.toString() };
      if (original instanceof Date) return { $date: original.toISOString() };
      return current;
    });
    return Buffer.from(json, "utf8");
  },
  decode<T>(bytes: Uint8Array): T {
    return JSON.parse(Buffer.from(bytes).toString("utf8"), (_key, value: unknown) => {
      if (value && typeof value === "object" && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === "$bigint") return BigInt((value as { $bigint: string }).$bigint);
        if (keys.length === 1 && keys[0] === "$date") return new Date((value as { $date: string }).$date);
      }
      return value;
    }) as T;
  },
};

/** A codec for one answer type, in the shape `runIdempotent` takes. */
export const answerCodec = <T>() => ({
  encode: (value: T) => storedAnswerCodec.encode(value),
  decode: (bytes: Uint8Array) => storedAnswerCodec.decode<T>(bytes),
});
