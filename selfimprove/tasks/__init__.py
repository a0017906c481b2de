"""Tasks: a prompt source, a generation prompt, answer extraction and a grader (the true utility)."""

from selfimprove.tasks.base import Problem, Task, TaskDataError

__all__ = ["Problem", "Task", "TaskDataError"]
