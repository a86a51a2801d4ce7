"""The application: the `rlhf-stack` CLI, recipe assembly from the stage registry, runner, sweeps, reports, submission."""
