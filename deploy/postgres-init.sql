-- One database per service (each service migrates its own at start-up).
CREATE DATABASE tally_credits;
CREATE DATABASE tally_generations;
CREATE DATABASE tally_usage;
