// CaravanCore module.
