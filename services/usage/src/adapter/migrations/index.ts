import type { MigrationEntry } from "@tally/platform";
import { Migration20261121000001 } from "./Migration20261121000001";
import { Migration20261123000001 } from "./Migration20261123000001";
import { Migration20261123000002 } from "./Migration20261123000002";
import { Migration20261124000001 } from "./Migration20261124000001";
import { Migration20261125000001 } from "./Migration20261125000001";
import { Migration20261126000001 } from "./Migration20261126000001";
import { Migration20261127000001 } from "./Migration20261127000001";
import { Migration20261128000001 } from "./Migration20261128000001";
import { Migration20261129000001 } from "./Migration20261129000001";
import { Migration20261130000001 } from "./Migration20261130000001";
import { Migration20261201000001 } from "./Migration20261201000001";
import { Migration20261205000001 } from "./Migration20261205000001";
import { Migration20261206000001 } from "./Migration20261206000001";
import { Migration20261206000005 } from "./Migration20261206000005";
import { Migration20261207000001 } from "./Migration20261207000001";
import { Migration20261207000051 } from "./Migration20261207000051";
import { Migration20261208000001 } from "./Migration20261208000001";
import { Migration20261208000002 } from "./Migration20261208000002";
import { Migration20261209000001 } from "./Migration20261209000001";

/** The usage service's migrations, in order. */
export const usageMigrations: MigrationEntry[] = [
  { name: "Migration20261121000001", class: Migration20261121000001 },
  { name: "Migration20261123000001", class: Migration20261123000001 },
  { name: "Migration20261123000002", class: Migration20261123000002 },
  { name: "Migration20261124000001", class: Migration20261124000001 },
  { name: "Migration20261125000001", class: Migration20261125000001 },
  { name: "Migration20261126000001", class: Migration20261126000001 },
  { name: "Migration20261127000001", class: Migration20261127000001 },
  { name: "Migration20261128000001", class: Migration20261128000001 },
  { name: "Migration20261129000001", class: Migration20261129000001 },
  { name: "Migration20261130000001", class: Migration20261130000001 },
  { name: "Migration20261201000001", class: Migration20261201000001 },
  { name: "Migration20261205000001", class: Migration20261205000001 },
  { name: "Migration20261206000001", class: Migration20261206000001 },
  { name: "Migration20261206000005", class: Migration20261206000005 },
  { name: "Migration20261207000001", class: Migration20261207000001 },
  { name: "Migration20261207000051", class: Migration20261207000051 },
  { name: "Migration20261208000001", class: Migration20261208000001 },
  { name: "Migration20261208000002", class: Migration20261208000002 },
  { name: "Migration20261209000001", class: Migration20261209000001 },
];
