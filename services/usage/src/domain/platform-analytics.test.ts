import { splitAtUtcDays } from "./platform-analytics";

const at = (iso: string) => new Date(iso);

describe("splitAtUtcDays", () => {
  it("serves whole UTC days from the rollups and nothing from the log for a window of whole days", () => {
    expect(splitAtUtcDays({ start: at("2027-01-01T00:00:00Z"), end: at("2027-04-01T00:00:00Z") })).toEqual({ days: { from: "2027-01-01", to: "2027-04-01" }, edges: [] });
  });

  it("reads the partial days at both edges from the log", () => {
    expect(splitAtUtcDays({ start: at("2027-01-01T10:00:00.001Z"), end: at("2027-01-05T23:59:59.999Z") })).toEqual({
      days: { from: "2027-01-02", to: "2027-01-05" },
      edges: [
        { start: at("2027-01-01T10:00:00.001Z"), end: at("2027-01-02T00:00:00Z") },
        { start: at("2027-01-05T00:00:00Z"), end: at("2027-01-05T23:59:59.999Z") },
      ],
    });
  });

  it("reads a window without a whole day from the log alone", () => {
    const inside = { start: at("2027-01-01T10:00:00Z"), end: at("2027-01-02T09:00:00Z") };
    expect(splitAtUtcDays(inside)).toEqual({ days: null, edges: [inside] });
    const oneDayOff = { start: at("2027-01-01T00:00:00.001Z"), end: at("2027-01-02T00:00:00Z") };
    expect(splitAtUtcDays(oneDayOff)).toEqual({ days: null, edges: [oneDayOff] });
  });
});
