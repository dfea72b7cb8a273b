import { generations } from "@tally/contracts";
import { formatEvent } from "./events";

const outputUrlFor = (id: string) => `http://gateway/v1/generations/${id}/output`;
const ID = "5b0e0000-0000-4000-8000-000000000001";

describe("formatEvent", () => {
  it("writes a progress change as `event: progress` with {id, status, progress}, its seq as the id", () => {
    const message = generations.WatchGenerationResponse.fromPartial({ generationId: ID, seq: 4n, status: generations.GenerationStatus.GENERATION_STATUS_PROCESSING, progressPercent: 40 });
    expect(formatEvent(message, outputUrlFor)).toBe(`id: 4\nevent: progress\ndata: {"id":"${ID}","status":"processing","progress":40}\n\n`);
  });

  it("writes a message with the whole generation as `event: status` with the Generation as GET answers it", () => {
    const generation = generations.Generation.fromPartial({
      id: ID, userId: ID, status: generations.GenerationStatus.GENERATION_STATUS_COMPLETED, inputType: generations.InputType.INPUT_TYPE_TEXT, progressPercent: 100, creditCost: 1n,
      createdAt: new Date("2026-12-05T10:00:00Z"),
    });
    const message = generations.WatchGenerationResponse.fromPartial({ generationId: ID, seq: 13n, status: generation.status, progressPercent: 100, generation });
    const [id, event, data, ...rest] = formatEvent(message, outputUrlFor).split("\n");
    expect([id, event, rest]).toEqual(["id: 13", "event: status", ["", ""]]);
    expect(JSON.parse(data!.slice("data: ".length))).toMatchObject({ id: ID, status: "completed", progress: 100, output_url: outputUrlFor(ID) });
  });
});
