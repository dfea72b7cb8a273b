import { Migration } from "@mikro-orm/migrations";
import { IDEMPOTENCY_TABLE_SQL } from "@tally/platform";

/** Generations, their outputs, and the transactional outbox of their events. */
export class Migration20261121000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(IDEMPOTENCY_TABLE_SQL);
    this.addSql(`
      CREATE TABLE generations (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
        input_type text NOT NULL CHECK (input_type IN ('text', 'photo', 'address')),
        prompt text NOT NULL DEFAULT '',
        photo_url text NOT NULL DEFAULT '',
        address text NOT NULL DEFAULT '',
        style text NOT NULL DEFAULT '',
        credit_cost bigint NOT NULL CHECK (credit_cost > 0),
        credit_type text NOT NULL CHECK (credit_type IN ('trial', 'purchased', 'mixed')),
        hold_id text NOT NULL,
        progress_percent integer NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
        provider text NOT NULL DEFAULT '',
        output_content_type text NOT NULL DEFAULT '',
        error_message text NOT NULL DEFAULT '',
        error_code text NOT NULL DEFAULT '',
        cost_micros bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
        processing_time_ms bigint NOT NULL DEFAULT 0 CHECK (processing_time_ms >= 0),
        -- How the hold ends, decided (step 1 of ending a job) before credits is called.
        settlement text CHECK (settlement IN ('capture', 'release')),
        -- Set once credits has captured or released the hold (step 3, or after a cancel).
        settled_at timestamptz,
        -- Which claim owns a processing job, and until when.
        lease_token uuid,
        lease_expires_at timestamptz,
        attempts integer NOT NULL DEFAULT 0,
        traceparent text,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        completed_at timestamptz,
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK (status <> 'completed' OR settlement = 'capture'),
        CHECK (status NOT IN ('failed', 'cancelled') OR settlement = 'release')
      )`);
    this.addSql("CREATE INDEX generations_user_newest ON generations (user_id, created_at DESC, id DESC)");
    // The worker's claim query scans only unfinished work.
    this.addSql(`CREATE INDEX generations_claimable ON generations (created_at, id)
      WHERE status IN ('pending', 'processing') OR (status = 'cancelled' AND settled_at IS NULL)`);
    this.addSql(`
      CREATE TABLE generation_outputs (
        generation_id uuid PRIMARY KEY REFERENCES generations (id) ON DELETE CASCADE,
        content_type text NOT NULL,
        content bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    this.addSql(`
      CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        subject text NOT NULL,
        payload bytea NOT NULL,
        traceparent text,
        created_at timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
      )`);
    this.addSql("CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL");
    this.addSql("CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL");
  }
}
