"""The sqsbus engine: publishing, receiving and settling SQS messages, without Kombu."""
