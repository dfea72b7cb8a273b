import { DomainError, newId, PAGE_SIZE_RULE } from "@tally/platform";
import { parseListUsageLogEntriesInput } from "./inputs";

const PAGE_SIZE_DEFAULT = PAGE_SIZE_RULE.sizeDefault;
const PAGE_SIZE_MAX = PAGE_SIZE_RULE.sizeMax;
/** The page size a ListUsageLogEntries request resolves to (the rest of the request valid). */
const resolvePageSize = (pageSize: number) => parseListUsageLogEntriesInput({ userId: newId(), pageSize, pageToken: "" }).pageSize;

describe("page size", () => {
  it("uses the default for 0 and keeps 1..100", () => {
    expect(resolvePageSize(0)).toBe(PAGE_SIZE_DEFAULT);
    expect(resolvePageSize(1)).toBe(1);
    expect(resolvePageSize(PAGE_SIZE_MAX)).toBe(100);
  });

  it.each([-1, 101, 1.5])("refuses %p", (size) => {
    expect(() => resolvePageSize(size)).toThrow(DomainError);
    expect(() => resolvePageSize(size)).toThrow(/page_size must be between 1 and 100/);
  });
});
