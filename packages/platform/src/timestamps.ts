/** Converts a nullable database timestamp to the optional Date ts-proto expects. */
export const optionalDate = (value: Date | string | null | undefined): Date | undefined =>
  value === null || value === undefined ? undefined : new Date(value);

/** Converts a PostgreSQL int8/numeric (returned as string) or number to bigint. */
export const toBigInt = (value: string | number | bigint | null | undefined): bigint =>
  value === null || value === undefined ? 0n : BigInt(value);
