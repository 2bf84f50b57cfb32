import { Model, snakeCaseMappers, type RelationMappings } from 'objection';
import { RoleModel } from './role.model';

export class UserModel extends Model {
  static override tableName = 'users';

  declare id: number;
  declare username: string;
  declare email: string;
  declare passwordHash: string;
  declare createdAt: Date;
  declare updatedAt: Date;
  declare disabledAt: Date | null;
  declare tokenVersion: number;
  declare tokensRevokedAt: Date | null;
  declare roles?: RoleModel[];

  // Columns are snake_case in the database, camelCase here.
  static override get columnNameMappers() {
    return snakeCaseMappers();
  }

  static override get relationMappings(): RelationMappings {
    return {
      roles: {
        relation: Model.ManyToManyRelation,
        modelClass: RoleModel,
        join: {
          from: 'users.id',
          through: { from: 'user_roles.user_id', to: 'user_roles.role_id' },
          to: 'roles.id',
        },
      },
    };
  }
}
