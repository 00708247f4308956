"""DICOM adapter: one pynetdicom AE serving Verification, Modality Worklist and MPPS; IAN SCU."""
