import type { MigrationEntry } from "@tally/platform";
import { Migration20261121000001 } from "./Migration20261121000001";
import { Migration20261122000001 } from "./Migration20261122000001";
import { Migration20261124000001 } from "./Migration20261124000001";
import { Migration20261125000001 } from "./Migration20261125000001";
import { Migration20261205000002 } from "./Migration20261205000002";
import { Migration20261205000003 } from "./Migration20261205000003";
import { Migration20261206000005 } from "./Migration20261206000005";

/** The generations database's migrations, in order. */
export const GENERATIONS_MIGRATIONS: MigrationEntry[] = [
  { name: "Migration20261121000001", class: Migration20261121000001 },
  { name: "Migration20261122000001", class: Migration20261122000001 },
  { name: "Migration20261124000001", class: Migration20261124000001 },
  { name: "Migration20261125000001", class: Migration20261125000001 },
  { name: "Migration20261205000002", class: Migration20261205000002 },
  { name: "Migration20261205000003", class: Migration20261205000003 },
  { name: "Migration20261206000005", class: Migration20261206000005 },
];
