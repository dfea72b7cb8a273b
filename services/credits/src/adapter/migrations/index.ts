import type { MigrationEntry } from "@tally/platform";
import { Migration20261121000001 } from "./Migration20261121000001";
import { Migration20261122000001 } from "./Migration20261122000001";
import { Migration20261123000001 } from "./Migration20261123000001";
import { Migration20261124000001 } from "./Migration20261124000001";
import { Migration20261126000001 } from "./Migration20261126000001";
import { Migration20261206000001 } from "./Migration20261206000001";
import { Migration20261206000005 } from "./Migration20261206000005";
import { Migration20261207000001 } from "./Migration20261207000001";
import { Migration20261207000021 } from "./Migration20261207000021";

/** The credits schema's migrations, in order. Append only: applied ones never change. */
export const creditsMigrations: MigrationEntry[] = [
  { name: "Migration20261121000001", class: Migration20261121000001 },
  { name: "Migration20261122000001", class: Migration20261122000001 },
  { name: "Migration20261123000001", class: Migration20261123000001 },
  { name: "Migration20261124000001", class: Migration20261124000001 },
  { name: "Migration20261126000001", class: Migration20261126000001 },
  { name: "Migration20261206000001", class: Migration20261206000001 },
  { name: "Migration20261206000005", class: Migration20261206000005 },
  { name: "Migration20261207000001", class: Migration20261207000001 },
  { name: "Migration20261207000021", class: Migration20261207000021 },
];
