import { Migration } from "@mikro-orm/migrations";

/**
 * Retries: a generation may retry or regenerate another (`parent_generation_id`, the
 * generation retried) and belongs to the job of its chain's original (`root_generation_id`,
 * null for an original). `billing_classification` (`original`, `free_retry`,
 * `paid_regeneration`) and `billing_reason` say how it is billed; a free retry holds nothing,
 * so it is the one generation with credit cost 0, credit type `none` and no hold id. The
 * partial index makes "free retries of this job so far" one indexed count (RetryGeneration,
 * under the root row's lock). Rows stored before read as originals.
 */
export class Migration20261125000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
      ALTER TABLE generations
        ADD COLUMN parent_generation_id uuid,
        ADD COLUMN root_generation_id uuid,
        ADD COLUMN billing_classification text NOT NULL DEFAULT 'original'
          CHECK (billing_classification IN ('original', 'free_retry', 'paid_regeneration')),
        ADD COLUMN billing_reason text NOT NULL DEFAULT '',
        ADD CONSTRAINT generations_parent_iff_retry
          CHECK ((billing_classification = 'original') = (parent_generation_id IS NULL) AND (parent_generation_id IS NULL) = (root_generation_id IS NULL)),
        DROP CONSTRAINT generations_credit_cost_check,
        ADD CONSTRAINT generations_credit_cost_check
          CHECK (CASE WHEN billing_classification = 'free_retry' THEN credit_cost = 0 ELSE credit_cost > 0 END),
        DROP CONSTRAINT generations_credit_type_check,
        ADD CONSTRAINT generations_credit_type_check
          CHECK (CASE WHEN billing_classification = 'free_retry' THEN credit_type = 'none' AND hold_id = '' ELSE credit_type IN ('trial', 'purchased', 'mixed') END)`);
    this.addSql("CREATE INDEX generations_free_retries_of_root ON generations (root_generation_id) WHERE billing_classification = 'free_retry'");
  }
}
